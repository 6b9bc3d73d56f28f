"""What one training step minimises: the objective registry (`flow.objective`).

An objective entry says which options it has (its `[flow.<name>]` section), which predictions it can
train, whether it trains a flow map u(x, t, r) (the backbone then takes a second time and the
sampler can jump with it), which guidance scale its samples carry at sampling guidance 1, and how
to build the object that does the work:

- `draw_times(n, generator, device) -> (t, r or None)`: the random times of a global batch;
- `per_sample_loss(model, batch) -> (loss (b,), logged (b,)[, parts])`: the loss whose mean the gradient
  comes from and the error the metrics log keeps by time bin (the same tensor for flow matching;
  MeanFlow logs its squared error before the adaptive weighting, which would make every sample's
  loss about 1); optionally a dict of further (b,) values the log keeps as their means (the
  autoencoder's reconstruction error and KL). `model` is the trainer's `TrainingModel`: called like the network, it runs the
  forward pass through the DDP wrapper; the core's MeanFlow loss asks it for its JVP.

`kind` says which networks it trains: "flow" objectives train a field model(x, t, y, r); the
"autoencoder" objective trains an autoencoder backbone (imgflow.nn.autoencoder) on pixels, draws no
times, and its run's grids are reconstructions. The math lives in imgflow.core (losses, mean_flow, vae). Adding an objective is one class and one
`OBJECTIVES` line; the trainer, sampler and config read everything from the entry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch
from torch import Tensor

from imgflow.core import LOSSES, TIME_PAIR_SAMPLERS, GaussianPath, sample_times, schedule_from_name
from imgflow.core.mean_flow import Guidance, mean_flow_loss, trained_guidance
from imgflow.core.time_sampling import sample_time_pairs, with_equal_rows
from imgflow.core.vae import RECONSTRUCTIONS, vae_loss
from imgflow.training.batches import MicroBatch

if TYPE_CHECKING:
    from imgflow.config import RunConfig

#: the predictions whose training target stays finite up to t = 1 (a score's does not)
PREDICTIONS = ("velocity", "noise")


class Objective(Protocol):
    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]: ...

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor]: ...


def build_path(cfg: RunConfig) -> GaussianPath:
    """x_t = alpha_t data + beta_t noise with the configured schedule ('linear' is the linear path)."""
    return GaussianPath(schedule_from_name(cfg.flow.schedule))


def _labels(batch: MicroBatch) -> dict[str, Tensor]:
    return {"y": batch.labels} if batch.labels is not None else {}


@dataclass
class FlowMatchingOptions:
    """[flow.flow_matching]: no keys of its own (times, prediction and reduction are [flow] keys)."""


class FlowMatchingObjective:
    """The loss of flow.prediction (velocity: flow matching; noise: noise prediction) at t ~ flow.time_sampling."""

    def __init__(self, cfg: RunConfig, options: FlowMatchingOptions, null_label: int | None) -> None:
        self.cfg = cfg
        self.path = build_path(cfg)
        self.loss_fn = LOSSES[cfg.flow.prediction]

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        f = self.cfg.flow
        return sample_times(n, f.time_sampling, mean=f.logit_normal_mean, std=f.logit_normal_std, generator=gen, device=device), None

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor]:
        loss = self.loss_fn(model, self.path, batch.data, batch.times, noise=batch.noise, model_kwargs=_labels(batch),
                            reduction=self.cfg.flow.loss_reduction, per_sample=True)
        return loss, loss.detach()


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

    def __init__(self, cfg: RunConfig, options: MeanFlowOptions, null_label: int | None) -> None:
        self.cfg = cfg
        self.options = options
        self.path = build_path(cfg)
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
                                      reduction=self.cfg.flow.loss_reduction, adaptive_p=o.adaptive_p, num_equal=len(equal),
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


@dataclass
class AutoencoderLossOptions:
    """[flow.autoencoder]: loss = per-pixel reconstruction error (l2 | l1) + beta * KL / D (imgflow.core.vae)."""

    beta: float = 1e-4
    reconstruction: str = "l2"

    def validate(self) -> None:
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction = {self.reconstruction!r} is not one of: {', '.join(RECONSTRUCTIONS)}")


class AutoencoderObjective:
    """The KL-autoencoder loss on pixels; no times (every sample is logged in the first time bin's place)."""

    def __init__(self, cfg: RunConfig, options: AutoencoderLossOptions, null_label: int | None) -> None:
        self.options = options

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        return torch.zeros(n, device=device), None

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        reconstruction, mean, logvar = model(batch.data)
        parts = vae_loss(reconstruction, batch.data, mean, logvar, self.options.beta, self.options.reconstruction)
        return parts.total, parts.total.detach(), {"reconstruction": parts.reconstruction.detach(), "kl": parts.kl.detach()}


def _autoencoder_checks(options: AutoencoderLossOptions, cfg: RunConfig) -> None:
    if cfg.data.autoencoder:
        raise ValueError("an autoencoder trains on pixels: leave data.autoencoder out of its config (it is for latent runs)")


def _mean_flow_checks(options: MeanFlowOptions, cfg: RunConfig) -> None:
    if (options.guidance != 1.0 or options.guidance_mix != 0.0) and not cfg.model.class_conditional:
        raise ValueError("flow.mean_flow.guidance needs a class-conditional model; set model.class_conditional = true or the guidance to 1")


@dataclass(frozen=True)
class ObjectiveEntry:
    """A registry entry: see the module docstring. `trained_guidance(options)`: the guidance scale samples at
    sampling guidance 1 look like (None: 1); `check(options, cfg)`: how the options fit the rest of the config."""

    name: str
    options: type
    build: Callable[[Any, Any, int | None], Objective]
    predictions: tuple[str, ...] = PREDICTIONS
    flow_map: bool = False
    trained_guidance: Callable[[Any], float] | None = None
    check: Callable[[Any, Any], None] | None = None
    kind: str = "flow"  # the backbone kind it trains: flow | autoencoder

    def validate(self, options: Any, cfg: RunConfig | None = None) -> None:
        """ValueError when the options are out of range (or, given cfg, do not fit it)."""
        own = getattr(options, "validate", None)
        if own is not None:
            own()
        if cfg is not None and self.check is not None:
            self.check(options, cfg)


OBJECTIVES: dict[str, ObjectiveEntry] = {
    "flow_matching": ObjectiveEntry("flow_matching", FlowMatchingOptions, FlowMatchingObjective),
    "mean_flow": ObjectiveEntry("mean_flow", MeanFlowOptions, MeanFlowObjective, predictions=("velocity",), flow_map=True,
                                trained_guidance=lambda o: trained_guidance(o.guidance, o.guidance_mix), check=_mean_flow_checks),
    "autoencoder": ObjectiveEntry("autoencoder", AutoencoderLossOptions, AutoencoderObjective, check=_autoencoder_checks,
                                  kind="autoencoder"),
}


def objective_entry(name: str) -> ObjectiveEntry:
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise ValueError(f"unknown objective {name!r}; choose one of {', '.join(OBJECTIVES)}") from None


def build_objective(cfg: RunConfig, null_label: int | None = None) -> Objective:
    """The objective of cfg.flow (null_label: the label meaning "no class", None for unconditional models)."""
    return objective_entry(cfg.flow.objective).build(cfg, cfg.flow.options, null_label)
