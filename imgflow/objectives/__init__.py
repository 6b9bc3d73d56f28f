"""What one training step minimises: the objective registry (`flow.objective`) and the project's objectives.

Importing any part of imgflow.objectives assembles the registry (`imgflow.objectives.base.OBJECTIVES`): flow
matching, MeanFlow and the autoencoder loss are registered here. The math lives in imgflow.core (losses,
mean_flow, vae); the protocol in `base`.
"""

from imgflow.objectives.autoencoder import AUTOENCODER_LOSS, AutoencoderLossOptions, AutoencoderObjective
from imgflow.objectives.base import (
    OBJECTIVES,
    PREDICTIONS,
    FlowSettings,
    MicroBatch,
    Objective,
    ObjectiveEntry,
    Preview,
    TeacherNetwork,
    objective_entry,
    register_objective,
)
from imgflow.objectives.distillation import (
    LAGRANGIAN_DISTILLATION,
    MEAN_FLOW_DISTILLATION,
    DistillationOptions,
    LagrangianDistillationOptions,
    MeanFlowDistillationOptions,
)
from imgflow.objectives.flow_matching import FLOW_MATCHING, FlowMatchingObjective, FlowMatchingOptions
from imgflow.objectives.mean_flow import ANNEALS, MEAN_FLOW, FlowMapPairs, MeanFlowObjective, MeanFlowOptions, equal_rows

for _entry in (FLOW_MATCHING, MEAN_FLOW, MEAN_FLOW_DISTILLATION, LAGRANGIAN_DISTILLATION, AUTOENCODER_LOSS):
    register_objective(_entry)


def build_objective(entry_name: str, flow: FlowSettings, options: object, null_label: int | None = None,
                    teacher: TeacherNetwork | None = None) -> Objective:
    """The objective `entry_name` for the [flow] view, its options, the null label (None: unconditional) and, for a
    distilling objective, its loaded teacher."""
    return OBJECTIVES[entry_name].make(flow, options, null_label, teacher)


__all__ = [name for name in dir() if not name.startswith("_")]
