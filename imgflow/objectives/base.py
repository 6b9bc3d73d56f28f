"""What an objective is: the registry entry, the batch it reads, and the typed view of the config it gets.

An objective entry (`ObjectiveEntry`, registered in `OBJECTIVES` by imgflow/objectives/__init__.py) says
which options it has (its `[flow.<name>]` section), which predictions it can train, whether it trains a
flow map u(x, t, r) (the backbone then takes a second time and the sampler can jump with it), which
guidance scale its samples carry at sampling guidance 1, what it logs beside the loss, how a run's
preview grid is drawn, which config keys it does not read (the config refuses them), and how to build
the object that does the work:

- `draw_times(n, generator, device) -> (t, r or None)`: the random times of a global batch;
- `per_sample_loss(model, batch) -> (loss (b,), logged (b,)[, parts])`: the loss whose mean the gradient
  comes from and the error the metrics log keeps by time bin (the same tensor for flow matching;
  MeanFlow logs its squared error before the adaptive weighting, which would make every sample's
  loss about 1); optionally a dict of further (b,) values the log keeps as their means (the entry's
  `log_parts`). `model` is the trainer's `TrainingModel`: called like the network, it runs the forward
  pass through the DDP wrapper; the core's MeanFlow loss asks it for its JVP.

An objective reads the config only through `FlowSettings` (the [flow] keys every flow objective shares)
and its own options: this package sits below imgflow.config, which builds both. `kind` says which
networks it trains: "flow" objectives train a field model(x, t, y, r); "autoencoder" ones an
autoencoder backbone on pixels. Adding an objective is one module and one `register_objective` line;
the trainer, sampler and config read everything from the entry.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from imgflow.core import GaussianPath, schedule_from_name
from imgflow.core.registry import Registry

#: the predictions whose training target stays finite up to t = 1 (a score's does not)
PREDICTIONS = ("velocity", "noise")


@dataclass(frozen=True)
class FlowSettings:
    """The [flow] keys an objective reads: the path's schedule, what the network predicts, how errors are reduced."""

    schedule: str = "linear"
    prediction: str = "velocity"
    loss_reduction: str = "mean"

    def path(self) -> GaussianPath:
        """x_t = alpha_t data + beta_t noise with this schedule ('linear' is the linear path)."""
        return GaussianPath(schedule_from_name(self.schedule))


@dataclass
class MicroBatch:
    """One process's share of one micro-batch, ready for a loss."""

    data: Tensor  # (b, C, H, W) in [-1, 1]
    times: Tensor  # (b,)
    noise: Tensor  # (b, C, H, W)
    labels: Tensor | None  # (b,) with dropped labels replaced by the null label, None if unconditional
    second_times: Tensor | None = None
    step: int = 0  # the optimiser step it belongs to (0-based): objectives with a schedule read it
    first_row: int = 0  # its first row's position in the global batch: row-pattern choices are the same on N processes


class Objective(Protocol):
    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]: ...

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, ...]: ...


@dataclass(frozen=True)
class EndpointPairs:
    """Pairs (noise x_0, the teacher's ODE solution x_1 from it) for full-jump rows: u(x_0, 0, 1) regresses onto x_1 - x_0.
    noise, ends: (N, C, H, W) float32 (memory-mapped from the cache); labels: (N,) or None (unconditional)."""

    noise: Tensor
    ends: Tensor
    labels: Tensor | None

    def __len__(self) -> int:
        return self.noise.shape[0]


@dataclass(frozen=True)
class TeacherNetwork:
    """A trained velocity model an objective distils (`ObjectiveEntry.teacher`): the frozen network, called like any
    backbone network(x, t, y=labels), what it predicts (a non-velocity prediction is converted on the path), where it
    was loaded from and a digest of its weights."""

    network: nn.Module
    prediction: str = "velocity"
    source: str = ""
    digest: str = ""
    pairs: EndpointPairs | None = None  # the cached (noise, ODE solution) pairs where the objective asks for them


@dataclass
class Preview:
    """What a run's preview grid may use: the network as it is now (EMA weights where kept), its training rows
    (images or latents) and the [sample] section's count and seed. `draw_samples(num, seed) -> PNG bytes` draws a
    grid of samples through the run's Sampler (the trainer provides it: objectives sit below the sampler)."""

    network: nn.Module
    data: Any
    num_images: int
    seed: int
    draw_samples: Callable[[int, int], bytes]


def sample_grid(preview: Preview) -> bytes:
    """The preview of a generative objective: num_images samples on the fixed seed."""
    return preview.draw_samples(preview.num_images, preview.seed)


@dataclass(frozen=True)
class ObjectiveEntry:
    """A registry entry: see the module docstring.

    trained_guidance(options): the guidance scale samples look like at sampling guidance 1 (None: 1).
    needs_labels(options): the key of a set option that guides with labels (None when none does).
    unused_keys: config keys ('section.key') this objective does not read, each with the reason; a config that
    sets one is refused. trains_on_latents: whether data.autoencoder may turn its data into latents.
    log_parts: names of the further values per_sample_loss returns; logs_time: whether its loss has a time
    (the log then keeps it by time bin). preview(Preview) -> PNG bytes: the grid a run draws at sample_every.
    teacher(options): the teacher a distilling objective names (a checkpoint or a shipped model's name; None for
    the others), then built as build(flow, options, null_label, teacher=TeacherNetwork), and whether the student
    starts from its weights (`starts_from_teacher(options)`); endpoint_pairs(options): how the teacher's cached
    (noise, ODE solution) pairs are made, (count, solver, steps) with count 0 for none.
    """

    name: str
    options: type
    build: Callable[[FlowSettings, Any, int | None], Objective]
    predictions: tuple[str, ...] = PREDICTIONS
    flow_map: bool = False
    trained_guidance: Callable[[Any], float] | None = None
    needs_labels: Callable[[Any], str | None] | None = None
    kind: str = "flow"  # the backbone kind it trains: flow | autoencoder
    unused_keys: dict[str, str] = field(default_factory=dict)
    trains_on_latents: bool = True
    log_parts: tuple[str, ...] = ()
    logs_time: bool = True
    preview: Callable[[Preview], bytes] = sample_grid
    teacher: Callable[[Any], str] | None = None
    starts_from_teacher: Callable[[Any], bool] | None = None
    endpoint_pairs: Callable[[Any], tuple[int, str, int]] | None = None

    def make(self, flow: FlowSettings, options: Any, null_label: int | None, teacher: TeacherNetwork | None = None) -> Objective:
        """The objective; a distilling one (`teacher` set) gets its loaded teacher network."""
        if self.teacher is None:
            return self.build(flow, options, null_label)
        if teacher is None:
            raise ValueError(f"objective {self.name!r} distils a teacher: pass the loaded TeacherNetwork")
        return self.build(flow, options, null_label, teacher=teacher)

    def validate(self, options: Any) -> None:
        """ValueError when the options are out of range."""
        own = getattr(options, "validate", None)
        if own is not None:
            own()

    def label_key(self, options: Any) -> str | None:
        return self.needs_labels(options) if self.needs_labels is not None else None

    def guidance_of(self, options: Any, conditional: bool) -> float | None:
        """The guidance a flow map's samples carry at sampling guidance 1 (None for a velocity objective)."""
        if not self.flow_map:
            return None
        return self.trained_guidance(options) if (self.trained_guidance and conditional) else 1.0


#: every objective by name (flow.objective); the project's own are registered in imgflow/objectives/__init__.py
OBJECTIVES: Registry[ObjectiveEntry] = Registry("objective", "flow.objective")


def register_objective(entry: ObjectiveEntry, *, replace: bool = False) -> ObjectiveEntry:
    """Add an objective (flow.objective = entry.name); its options dataclass becomes [flow.<name>]."""
    import dataclasses

    if not dataclasses.is_dataclass(entry.options):
        raise TypeError(f"objective {entry.name!r}: options must be a dataclass (its [flow.{entry.name}] section)")
    return OBJECTIVES.register(entry.name, entry, replace=replace)


def objective_entry(name: str) -> ObjectiveEntry:
    """The entry of flow.objective = name (an UnknownNameError, a ValueError, for any other name)."""
    return OBJECTIVES[name]


__all__ = [
    "OBJECTIVES",
    "PREDICTIONS",
    "EndpointPairs",
    "FlowSettings",
    "MicroBatch",
    "Objective",
    "ObjectiveEntry",
    "Preview",
    "TeacherNetwork",
    "objective_entry",
    "register_objective",
    "sample_grid",
]
