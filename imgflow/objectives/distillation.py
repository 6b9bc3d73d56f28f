"""Flow maps distilled from a flow-matching teacher (imgflow.core.flow_map_distillation): two objectives.

- `mean_flow_distillation`: MeanFlow whose JVP tangent and target use the teacher's velocity v_T(x_t, t)
  instead of data - noise (Eulerian; one JVP per jump row).
- `lagrangian_distillation`: the student's own jump to r' and one teacher Euler step from r' to r give
  the target (no forward-mode AD); the step fraction (r - r') / (r - t) anneals toward 0.

Both name their teacher by a checkpoint (file or run folder) or a shipped model's name (`teacher`), fold
its classifier-free guidance in at `teacher_guidance` (samples at sampling guidance 1 look like the teacher's
at that scale), and by default start the student from the teacher's weights with the second time's
embedding new and zero, so that u(x, t, r) = v_T(x, t) at step 0. The teacher is loaded by the resolved run
(imgflow.teacher): objectives sit below checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from imgflow.core import SOLVERS, ClassifierFreeGuidance, ModelField, sample_time_pairs
from imgflow.core.flow_map_distillation import EQUAL_TARGETS, lagrangian_distillation_loss, teacher_mean_flow_loss
from imgflow.core.mean_flow import flow_map_regression
from imgflow.objectives.base import FlowSettings, MicroBatch, ObjectiveEntry, TeacherNetwork
from imgflow.objectives.mean_flow import FlowMapPairs, OrderedRows, ordered_rows


@dataclass
class DistillationOptions(FlowMapPairs):
    """What both distilling objectives share: the (t, r) pairs and weighting of `FlowMapPairs` (defaults: uniform pairs,
    10 % full jumps, r = t for a quarter of the rows, adaptive p = 1: configs/mnist_meanflow.toml's), the `teacher`
    (a checkpoint file or run folder, or a shipped model's name such as "mnist"), the guidance folded into its velocity
    (`teacher_guidance`, 1 = none), whether the student starts from the teacher's weights (`init_from_teacher`), and
    what the r = t rows regress onto (`equal_target`: "teacher" = v_T, "data" = data - noise, flow matching).

    Endpoint pairs: with `endpoint_pairs` = N > 0, the full-jump share of the rows (`full_jump_fraction`, a fixed
    pattern of rows instead of random ones) regresses u(x_0, 0, 1) onto x_1 - x_0 for cached pairs (noise x_0, the
    teacher's ODE solution x_1 from it with `endpoint_solver` in `endpoint_steps` steps at teacher_guidance): exact
    endpoints of the teacher's map, solved once (imgflow.teacher.endpoint_pairs; the build counts in train.max_minutes)."""

    time_std: float = 0.0
    full_jump_fraction: float = 0.1
    equal_fraction: float = 0.25
    teacher: str = ""
    teacher_guidance: float = 1.0
    init_from_teacher: bool = True
    equal_target: str = "teacher"
    endpoint_pairs: int = 0
    endpoint_solver: str = "euler"
    endpoint_steps: int = 20

    def validate(self) -> None:
        super().validate()
        if not self.teacher:
            raise ValueError("teacher is not set: name the flow-matching model to distil, a checkpoint file or run folder or a "
                             "shipped model (e.g. teacher = \"mnist\")")
        if not (self.teacher_guidance >= 0.0 and math.isfinite(self.teacher_guidance)):
            raise ValueError(f"teacher_guidance must be >= 0 (1 = no guidance), got {self.teacher_guidance}")
        if self.equal_target not in EQUAL_TARGETS:
            raise ValueError(f"equal_target = {self.equal_target!r} is not one of: {', '.join(EQUAL_TARGETS)}")
        if self.endpoint_pairs < 0 or self.endpoint_steps < 1:
            raise ValueError(f"endpoint_pairs must be >= 0 (0 = none) and endpoint_steps >= 1, got {self.endpoint_pairs} and "
                             f"{self.endpoint_steps}")
        odes = [n for n, e in SOLVERS.items() if not e.stochastic and not e.flow_map]
        if self.endpoint_solver not in odes:
            raise ValueError(f"endpoint_solver = {self.endpoint_solver!r} is not one of: {', '.join(odes)}")
        if self.endpoint_pairs and not self.full_jump_fraction:
            raise ValueError("endpoint_pairs > 0 trains the full-jump rows on them, but full_jump_fraction is 0; give it a share "
                             "(e.g. 0.1) or set endpoint_pairs = 0")

    @property
    def pair_share(self) -> float:
        """The share of rows trained on endpoint pairs (the full-jump share, when there are pairs)."""
        return self.full_jump_fraction if self.endpoint_pairs else 0.0

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """As `FlowMapPairs.draw_times`; with endpoint pairs the full jumps are the pair rows, not random ones."""
        if not self.endpoint_pairs:
            return super().draw_times(n, gen, device)
        return sample_time_pairs(n, self.time_sampler, mean=self.time_mean, std=self.time_std, r_mean=self.r_mean, r_std=self.r_std,
                                 generator=gen, device=device)


@dataclass
class MeanFlowDistillationOptions(DistillationOptions):
    """[flow.mean_flow_distillation]: `DistillationOptions`, and `tangent_norm` c: 0 regresses onto the MeanFlow target
    itself, c > 0 onto its normalised form (imgflow.core.mean_flow.normalised_target: each sample's residual divided by
    its root-mean-square + c, Align Your Flow's tangent normalisation; then adaptive_p = 0 is the natural weight), and
    `tangent_step` eps: 0 takes du/dt as the exact JVP, eps > 0 as a finite difference over eps along the teacher's
    Euler step (no forward-mode AD; smooths a time embedding's fast wiggles: see imgflow.core.flow_map_distillation)."""

    tangent_norm: float = 0.0
    tangent_step: float = 0.0

    def validate(self) -> None:
        super().validate()
        if not (self.tangent_norm >= 0.0 and math.isfinite(self.tangent_norm)):
            raise ValueError(f"tangent_norm must be >= 0 (0 = off), got {self.tangent_norm}")
        if not 0.0 <= self.tangent_step < 1.0:
            raise ValueError(f"tangent_step must be in [0, 1) (0 = the exact JVP), got {self.tangent_step}")


@dataclass
class LagrangianDistillationOptions(DistillationOptions):
    """[flow.lagrangian_distillation]: `DistillationOptions`, and the step fraction delta = (r - r') / (r - t) of the
    teacher's Euler step: `step_fraction` at step 0, linearly to `final_step_fraction` over `anneal_steps` optimiser
    steps (0 = constant), then held."""

    step_fraction: float = 0.5
    final_step_fraction: float = 0.1
    anneal_steps: int = 1000

    def validate(self) -> None:
        super().validate()
        for name in ("step_fraction", "final_step_fraction"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.anneal_steps < 0:
            raise ValueError(f"anneal_steps must be >= 0, got {self.anneal_steps}")

    def fraction_at(self, step: int) -> float:
        """delta at optimiser step `step` (0-based)."""
        if self.anneal_steps == 0:
            return self.step_fraction
        p = min(1.0, step / self.anneal_steps)
        return self.step_fraction + p * (self.final_step_fraction - self.step_fraction)


class DistillationObjective:
    """The shared part: the teacher's guided velocity, the (t, r) draws and the ordering of the r = t rows."""

    def __init__(self, flow: FlowSettings, options: DistillationOptions, null_label: int | None, *, teacher: TeacherNetwork) -> None:
        self.flow = flow
        self.options = options
        self.path = flow.path()
        self.null_label = null_label
        self.teacher = teacher
        teacher.network.eval().requires_grad_(False)

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        return self.options.draw_times(n, gen, device)

    def teacher_velocity(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """v_T(x, t | y) with classifier-free guidance at teacher_guidance (rows whose label was dropped: unconditional)."""
        net = self.teacher.network
        model = ClassifierFreeGuidance(net, y, self.options.teacher_guidance, self.null_label) if y is not None else net
        with torch.no_grad():
            return ModelField(model, self.teacher.prediction, self.path.schedule)(x, t)

    def loss(self, model: Callable[..., Tensor], ordered: OrderedRows, step: int) -> tuple[Tensor, Tensor]:
        """(weighted (b,), logged (b,)) for the rows of `ordered` (no pair rows)."""
        raise NotImplementedError

    def pair_loss(self, model: Callable[..., Tensor], ordered: OrderedRows, step: int) -> tuple[Tensor, Tensor]:
        """|| u(x_0, 0, 1) - (x_1 - x_0) ||^2 for cached pairs, a different pair for every (step, global row)."""
        pairs = self.teacher.pairs
        index = torch.tensor([(step * 1_000_003 + g * 7_919) % len(pairs) for g in ordered.pair_rows])
        device = ordered.data.device
        x0, x1 = pairs.noise[index].to(device), pairs.ends[index].to(device)
        kwargs = {"y": pairs.labels[index].to(device)} if pairs.labels is not None and ordered.labels is not None else {}
        zeros = torch.zeros(len(index), device=device)
        u = model(x0, zeros, r=zeros + 1, **kwargs)
        return flow_map_regression(u, x1 - x0, reduction=self.flow.loss_reduction, adaptive_p=self.options.adaptive_p, per_sample=True)

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor]:
        pairs = self.teacher.pairs
        ordered = ordered_rows(batch, self.options.equal_fraction, self.options.pair_share if pairs is not None else 0.0)
        if ordered.num_pairs == 0:
            loss, logged = self.loss(model, ordered, batch.step)
        else:
            main = ordered.head(ordered.data.shape[0] - ordered.num_pairs)
            parts = [self.loss(model, main, batch.step)] if main.data.shape[0] else []
            parts.append(self.pair_loss(model, ordered, batch.step))
            loss, logged = (torch.cat(p) for p in zip(*parts))
        return ordered.restore(loss), ordered.restore(logged)


class MeanFlowDistillationObjective(DistillationObjective):
    """Teacher-guided MeanFlow: tangent (v_T, 1, 0), target v_T + (r - t) du/dt (imgflow.core.flow_map_distillation)."""

    def loss(self, model: Callable[..., Tensor], ordered: OrderedRows, step: int) -> tuple[Tensor, Tensor]:
        o = self.options
        return teacher_mean_flow_loss(model, self.teacher_velocity, self.path, ordered.data, ordered.t, ordered.r,
                                      noise=ordered.noise, model_kwargs={"y": ordered.labels} if ordered.labels is not None else {},
                                      num_equal=ordered.num_equal, equal_target=o.equal_target,
                                      reduction=self.flow.loss_reduction, adaptive_p=o.adaptive_p, tangent_norm=o.tangent_norm,
                                      tangent_step=o.tangent_step, frozen=getattr(model, "module", model), per_sample=True)


class LagrangianDistillationObjective(DistillationObjective):
    """Discrete Lagrangian map distillation: the student's stop-gradient jump to r', one teacher Euler step to r."""

    def loss(self, model: Callable[..., Tensor], ordered: OrderedRows, step: int) -> tuple[Tensor, Tensor]:
        o = self.options
        frozen = getattr(model, "module", model)  # the bare network (the trainer's handle holds it): no DDP hooks, no gradient
        return lagrangian_distillation_loss(model, self.teacher_velocity, self.path, ordered.data, ordered.t, ordered.r,
                                            step_fraction=o.fraction_at(step), frozen=frozen, noise=ordered.noise,
                                            model_kwargs={"y": ordered.labels} if ordered.labels is not None else {},
                                            num_equal=ordered.num_equal, equal_target=o.equal_target,
                                            reduction=self.flow.loss_reduction, adaptive_p=o.adaptive_p, per_sample=True)


def _guiding_key(name: str) -> Callable[[DistillationOptions], str | None]:
    return lambda o: f"flow.{name}.teacher_guidance" if o.teacher_guidance != 1.0 else None


def _entry(name: str, options: type, build: type) -> ObjectiveEntry:
    return ObjectiveEntry(name, options, build, predictions=("velocity",), flow_map=True,
                          trained_guidance=lambda o: o.teacher_guidance, needs_labels=_guiding_key(name),
                          teacher=lambda o: o.teacher, starts_from_teacher=lambda o: o.init_from_teacher,
                          endpoint_pairs=lambda o: (o.endpoint_pairs, o.endpoint_solver, o.endpoint_steps))


MEAN_FLOW_DISTILLATION = _entry("mean_flow_distillation", MeanFlowDistillationOptions, MeanFlowDistillationObjective)
LAGRANGIAN_DISTILLATION = _entry("lagrangian_distillation", LagrangianDistillationOptions, LagrangianDistillationObjective)
