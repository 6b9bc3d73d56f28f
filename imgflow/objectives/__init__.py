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
    objective_entry,
    register_objective,
)
from imgflow.objectives.flow_matching import FLOW_MATCHING, FlowMatchingObjective, FlowMatchingOptions
from imgflow.objectives.mean_flow import ANNEALS, MEAN_FLOW, MeanFlowObjective, MeanFlowOptions, equal_rows

for _entry in (FLOW_MATCHING, MEAN_FLOW, AUTOENCODER_LOSS):
    register_objective(_entry)


def build_objective(entry_name: str, flow: FlowSettings, options: object, null_label: int | None = None) -> Objective:
    """The objective `entry_name` for the [flow] view, its options and the null label (None: unconditional)."""
    return OBJECTIVES[entry_name].build(flow, options, null_label)


__all__ = [name for name in dir() if not name.startswith("_")]
