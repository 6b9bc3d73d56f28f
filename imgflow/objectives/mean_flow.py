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
class MeanFlowOptions:
    """[flow.mean_flow]: (t, r) pairs from `time_sampler` (imgflow.core.TIME_PAIR_SAMPLERS: "sorted" = two sorted
    draws of logit-normal(time_mean, time_std), time_std 0 = uniform; "independent" = t ~ LN(time_mean, time_std),
    r ~ LN(r_mean, r_std), ordered), a share `full_jump_fraction` of exact (0, 1) jumps, and r = t for `equal_fraction`
    of each micro-batch (those rows skip the JVP); classifier-free guidance omega (`guidance`) with the model's own
    conditional velocity mixed in at weight kappa (`guidance_mix`) is folded into the target (samples look guided like
    w = omega / (1 - kappa)); the loss weight is 1 / (error + eps)^adaptive_p (0 = plain squared error).

    Warm-up inside the run: the first `flow_matching_steps` steps train every row at r = t (flow matching at the
    flow map's own time scale, no JVP, no guidance folded in: a flow-matching step's cost); over the next `anneal_steps` steps `anneal`
    ramps linearly to MeanFlow: "share" the r != t share from 0 to 1 - equal_fraction, "derivative" the du/dt
    coefficient c of the target v + c (r - t) du/dt from 0 to 1, "both" both."""

    time_sampler: str = "sorted"
    time_mean: float = 0.4
    time_std: float = 1.0
    r_mean: float = 2.0
    r_std: float = 1.0
    full_jump_fraction: float = 0.0
    equal_fraction: float = 0.75
    guidance: float = 1.0
    guidance_mix: float = 0.0
    adaptive_p: float = 1.0
    flow_matching_steps: int = 0
    anneal_steps: int = 0
    anneal: str = "both"

    def validate(self) -> None:
        if self.time_sampler not in TIME_PAIR_SAMPLERS:
            raise ValueError(f"time_sampler = {self.time_sampler!r} is not one of: {', '.join(TIME_PAIR_SAMPLERS)}")
        for name in ("equal_fraction", "full_jump_fraction"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.time_std < 0 or self.r_std < 0:
            raise ValueError(f"time_std and r_std must be >= 0 (0 = uniform times), got {self.time_std} and {self.r_std}")
        if not 0.0 <= self.guidance_mix < 1.0:
            raise ValueError(f"guidance_mix must be in [0, 1), got {self.guidance_mix}")
        if not (self.guidance > 0.0 and math.isfinite(self.guidance)):
            raise ValueError(f"guidance must be > 0 (1 = no guidance), got {self.guidance}")
        if self.adaptive_p < 0:
            raise ValueError(f"adaptive_p must be >= 0, got {self.adaptive_p}")
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
        o = self.options
        return sample_time_pairs(n, o.time_sampler, mean=o.time_mean, std=o.time_std, r_mean=o.r_mean, r_std=o.r_std,
                                 full_jump_fraction=o.full_jump_fraction, generator=gen, device=device)

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor]:
        o = self.options
        b = batch.data.shape[0]
        equal = equal_rows(batch.first_row, b, o.equal_share(batch.step))  # host-known: no device read
        chosen = set(equal)
        order = equal + [j for j in range(b) if j not in chosen]  # the r = t rows first, where the loss skips their JVP
        perm = None if order == list(range(b)) else torch.tensor(order, device=batch.data.device)

        def take(x: Tensor | None) -> Tensor | None:
            return x if x is None or perm is None else x[perm]

        t = take(batch.times)
        r = with_equal_rows(t, take(batch.second_times), len(equal))
        labels = take(batch.labels)
        guidance = self.guidance if o.progress(batch.step) > 0 else None  # the flow-matching phase trains plain v(x, t | c)
        loss, logged = mean_flow_loss(model, self.path, take(batch.data), t, r, noise=take(batch.noise),
                                      model_kwargs={"y": labels} if labels is not None else {}, guidance=guidance,
                                      reduction=self.flow.loss_reduction, adaptive_p=o.adaptive_p, num_equal=len(equal),
                                      derivative_scale=o.derivative_scale(batch.step), per_sample=True)
        if perm is not None:  # back to the batch's order, where the trainer logs them by time
            inverse = torch.argsort(perm)
            loss, logged = loss[inverse], logged[inverse]
        return loss, logged


def equal_rows(first_row: int, num_rows: int, share: float) -> list[int]:
    """The rows (0-based within a micro-batch starting at global row `first_row`) trained at r = t: global row g is one
    when floor((g + 1) share) > floor(g share), a pattern spread evenly over the global batch, so N processes (or
    accumulation steps) choose the same samples as one process."""
    return [j for j in range(num_rows)
            if math.floor((first_row + j + 1) * share + 1e-9) > math.floor((first_row + j) * share + 1e-9)]


def _guiding_key(options: MeanFlowOptions) -> str | None:
    if options.guidance != 1.0 or options.guidance_mix != 0.0:
        return "flow.mean_flow.guidance" if options.guidance != 1.0 else "flow.mean_flow.guidance_mix"
    return None


MEAN_FLOW = ObjectiveEntry("mean_flow", MeanFlowOptions, MeanFlowObjective, predictions=("velocity",), flow_map=True,
                           trained_guidance=lambda o: trained_guidance(o.guidance, o.guidance_mix), needs_labels=_guiding_key)
