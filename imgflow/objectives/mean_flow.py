"""MeanFlow on a flow-map backbone (imgflow.core.mean_flow): (t, r) pairs, a JVP target, guidance folded in."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from imgflow.core import TIME_PAIR_SAMPLERS
from imgflow.core.mean_flow import Guidance, mean_flow_loss, trained_guidance
from imgflow.core.time_sampling import sample_time_pairs, with_equal_rows
from imgflow.objectives.base import FlowSettings, MicroBatch, ObjectiveEntry

#: what a MeanFlow warm-up ramps (flow.mean_flow.anneal): the share of r != t rows, the du/dt coefficient, or both
ANNEALS = ("share", "derivative", "both")


@dataclass
class FlowMapPairs:
    """The (t, r) pairs and weighting every flow-map objective shares: pairs from `time_sampler`
    (imgflow.core.TIME_PAIR_SAMPLERS: "sorted" = two sorted draws of logit-normal(time_mean, time_std), time_std 0 =
    uniform; "independent" = t ~ LN(time_mean, time_std), r ~ LN(r_mean, r_std), ordered), a share
    `full_jump_fraction` of exact (0, 1) jumps, r = t for `equal_fraction` of each micro-batch (those rows skip the
    JVP), and the loss weight 1 / (error + eps)^adaptive_p (0 = plain squared error)."""

    time_sampler: str = "sorted"
    time_mean: float = 0.4
    time_std: float = 1.0
    r_mean: float = 2.0
    r_std: float = 1.0
    full_jump_fraction: float = 0.0
    equal_fraction: float = 0.75
    adaptive_p: float = 1.0

    def validate(self) -> None:
        if self.time_sampler not in TIME_PAIR_SAMPLERS:
            raise ValueError(f"time_sampler = {self.time_sampler!r} is not one of: {', '.join(TIME_PAIR_SAMPLERS)}")
        for name in ("equal_fraction", "full_jump_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.time_std < 0 or self.r_std < 0:
            raise ValueError(f"time_std and r_std must be >= 0 (0 = uniform times), got {self.time_std} and {self.r_std}")
        if self.adaptive_p < 0:
            raise ValueError(f"adaptive_p must be >= 0, got {self.adaptive_p}")

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        """The (t, r) pairs of a global batch of n rows (the r = t rows are chosen per micro-batch: `ordered_rows`)."""
        return sample_time_pairs(n, self.time_sampler, mean=self.time_mean, std=self.time_std, r_mean=self.r_mean,
                                 r_std=self.r_std, full_jump_fraction=self.full_jump_fraction, generator=gen, device=device)


@dataclass
class MeanFlowOptions(FlowMapPairs):
    """[flow.mean_flow]: the pairs and weighting of `FlowMapPairs`; classifier-free guidance omega (`guidance`) with the
    model's own conditional velocity mixed in at weight kappa (`guidance_mix`) is folded into the target (samples look
    guided like w = omega / (1 - kappa)); the adaptive weight's eps is meant for the per-sample sum.

    Warm-up inside the run: the first `flow_matching_steps` steps train every row at r = t (flow matching at the
    flow map's own time scale, no JVP, no guidance folded in: a flow-matching step's cost); over the next `anneal_steps` steps `anneal`
    ramps linearly to MeanFlow: "share" the r != t share from 0 to 1 - equal_fraction, "derivative" the du/dt
    coefficient c of the target v + c (r - t) du/dt from 0 to 1, "both" both."""

    guidance: float = 1.0
    guidance_mix: float = 0.0
    flow_matching_steps: int = 0
    anneal_steps: int = 0
    anneal: str = "both"

    def validate(self) -> None:
        super().validate()
        if not 0.0 <= self.guidance_mix < 1.0:
            raise ValueError(f"guidance_mix must be in [0, 1), got {self.guidance_mix}")
        if not (self.guidance > 0.0 and math.isfinite(self.guidance)):
            raise ValueError(f"guidance must be > 0 (1 = no guidance), got {self.guidance}")
        if self.flow_matching_steps < 0 or self.anneal_steps < 0:
            raise ValueError(f"flow_matching_steps and anneal_steps must be >= 0, got {self.flow_matching_steps} and {self.anneal_steps}")
        if self.anneal not in ANNEALS:
            raise ValueError(f"anneal = {self.anneal!r} is not one of: {', '.join(ANNEALS)}")

    def progress(self, step: int) -> float:
        """How far the warm-up is at optimiser step `step` (0-based): 0 in the flow-matching phase, 1 from its end on."""
        if step < self.flow_matching_steps:
            return 0.0
        if self.anneal_steps == 0:
            return 1.0
        return min(1.0, (step - self.flow_matching_steps + 1) / self.anneal_steps)

    def equal_share(self, step: int) -> float:
        """The share of rows trained at r = t in step `step`."""
        ramped = self.anneal in ("share", "both")
        p = self.progress(step)
        if p == 0.0:
            return 1.0
        return 1.0 - (p if ramped else 1.0) * (1.0 - self.equal_fraction)

    def derivative_scale(self, step: int) -> float:
        """The coefficient of the du/dt term in step `step`."""
        p = self.progress(step)
        return p if self.anneal in ("derivative", "both") else float(p > 0)


class MeanFlowObjective:
    """MeanFlow (imgflow.core.mean_flow) on a flow-map backbone: (t, r) pairs, a JVP target, guidance folded in."""

    def __init__(self, flow: FlowSettings, options: MeanFlowOptions, null_label: int | None) -> None:
        self.flow = flow
        self.options = options
        self.path = flow.path()
        self.guidance = Guidance(options.guidance, options.guidance_mix, null_label) if null_label is not None else None

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        return self.options.draw_times(n, gen, device)

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor]:
        o = self.options
        ordered = ordered_rows(batch, o.equal_share(batch.step))
        data, t, r, noise, labels = ordered.data, ordered.t, ordered.r, ordered.noise, ordered.labels
        guidance = self.guidance if o.progress(batch.step) > 0 else None  # the flow-matching phase trains plain v(x, t | c)
        loss, logged = mean_flow_loss(model, self.path, data, t, r, noise=noise,
                                      model_kwargs={"y": labels} if labels is not None else {}, guidance=guidance,
                                      reduction=self.flow.loss_reduction, adaptive_p=o.adaptive_p, num_equal=ordered.num_equal,
                                      derivative_scale=o.derivative_scale(batch.step), per_sample=True)
        return ordered.restore(loss), ordered.restore(logged)


@dataclass
class OrderedRows:
    """A micro-batch with its r = t rows moved first (where the flow-map losses skip their JVP) and its endpoint-pair
    rows (if any) last: the inputs in that order, and `restore`, which puts per-row results back into the batch's
    order (where the trainer logs them by time). pair_rows: the global batch positions of the last num_pairs rows."""

    data: Tensor
    t: Tensor
    r: Tensor
    noise: Tensor
    labels: Tensor | None
    num_equal: int
    perm: Tensor | None
    num_pairs: int = 0
    pair_rows: tuple[int, ...] = ()

    def restore(self, values: Tensor) -> Tensor:
        return values if self.perm is None else values[torch.argsort(self.perm)]

    def head(self, n: int) -> OrderedRows:
        """The first n rows (the r = t rows and the jumps, before any pair rows)."""
        part = slice(0, n)
        return OrderedRows(self.data[part], self.t[part], self.r[part], self.noise[part],
                           None if self.labels is None else self.labels[part], min(self.num_equal, n), None)


def ordered_rows(batch: MicroBatch, equal_share: float, pair_share: float = 0.0) -> OrderedRows:
    """The rows `equal_rows` picks for r = t moved to the front, and a share pair_share of the others (the same
    pattern, shifted by half a period) to the back (host-known patterns: no device read)."""
    b = batch.data.shape[0]
    equal = equal_rows(batch.first_row, b, equal_share)
    chosen = set(equal)
    pairs = [j for j in equal_rows(batch.first_row, b, pair_share, phase=0.5) if j not in chosen] if pair_share > 0 else []
    chosen |= set(pairs)
    order = equal + [j for j in range(b) if j not in chosen] + pairs
    perm = None if order == list(range(b)) else torch.tensor(order, device=batch.data.device)

    def take(x: Tensor | None) -> Tensor | None:
        return x if x is None or perm is None else x[perm]

    t = take(batch.times)
    return OrderedRows(take(batch.data), t, with_equal_rows(t, take(batch.second_times), len(equal)), take(batch.noise),
                       take(batch.labels), len(equal), perm, len(pairs), tuple(batch.first_row + j for j in pairs))


def equal_rows(first_row: int, num_rows: int, share: float, phase: float = 0.0) -> list[int]:
    """The rows (0-based within a micro-batch starting at global row `first_row`) trained at r = t: global row g is one
    when floor((g + 1) share + phase) > floor(g share + phase), a pattern spread evenly over the global batch, so N
    processes (or accumulation steps) choose the same samples as one process."""
    return [j for j in range(num_rows)
            if math.floor((first_row + j + 1) * share + phase + 1e-9) > math.floor((first_row + j) * share + phase + 1e-9)]


def _guiding_key(options: MeanFlowOptions) -> str | None:
    if options.guidance != 1.0 or options.guidance_mix != 0.0:
        return "flow.mean_flow.guidance" if options.guidance != 1.0 else "flow.mean_flow.guidance_mix"
    return None


MEAN_FLOW = ObjectiveEntry("mean_flow", MeanFlowOptions, MeanFlowObjective, predictions=("velocity",), flow_map=True,
                           trained_guidance=lambda o: trained_guidance(o.guidance, o.guidance_mix), needs_labels=_guiding_key)
