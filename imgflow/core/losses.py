"""Training objectives on an interpolant path, shared by the 2-D MLPs and the image U-Net.

Every loss compares a network output with a target built from a data batch `data` (B, ...)
and a noise batch `noise` (the source draw, drawn here unless given), at times t (B,), on
x_t = alpha_t data + beta_t noise. `model` is called as model(x_t, t, **model_kwargs).

Normalisation (all losses): a per-sample squared norm divided by the number of elements
per sample D (`reduction="mean"`, the default: comparable across image sizes, and what
published image recipes clip gradients against), or not divided (`"sum"`: the per-sample
sum of squares ||.||^2 of the math). With `per_sample=True` the (B,) per-sample values are
returned (a trainer logs them by time bin); otherwise their batch mean. The interpolant
objective is normalised the same way, so it equals half the flow-matching loss minus a
model-independent term.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from torch import Tensor

from imgflow.core.paths import GaussianPath, InterpolantPath
from imgflow.core.registry import Registry

Reduction = Literal["mean", "sum"]
REDUCTIONS: tuple[str, ...] = ("mean", "sum")
Model = Callable[..., Tensor]


def per_sample_reduce(values: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Reduce (B, ...) to (B,): sum over non-batch dims, divided by D for 'mean'."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"unknown reduction {reduction!r}; use 'mean' or 'sum'")
    flat = values.flatten(1)
    return flat.mean(1) if reduction == "mean" else flat.sum(1)


def finish(per_sample: Tensor, keep_per_sample: bool) -> Tensor:
    """The (B,) per-sample losses, or their batch mean."""
    return per_sample if keep_per_sample else per_sample.mean()


def _predict(
    model: Model, path: InterpolantPath, data: Tensor, t: Tensor, noise: Tensor | None, model_kwargs: dict[str, Any] | None
) -> tuple[Tensor, Tensor]:
    """Draw the noise (unless given), form x_t, evaluate the model there: returns (noise, prediction)."""
    noise = path.sample_source(data) if noise is None else noise
    return noise, model(path.interpolate(data, noise, t), t, **(model_kwargs or {}))


def flow_matching_loss(
    model: Model,
    path: InterpolantPath,
    data: Tensor,
    t: Tensor,
    *,
    noise: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
    per_sample: bool = False,
) -> Tensor:
    """Conditional flow matching: E || u_theta(x_t, t) - u_t(x_t | data) ||^2.

    The target u_t(x_t | data) = d_alpha data + d_beta noise is evaluated from (data, noise)
    directly, so it stays finite at t = 1. data: (B, ...), t: (B,), noise: optional source draw.
    """
    noise, pred = _predict(model, path, data, t, noise, model_kwargs)
    target = path.interpolant_velocity(data, noise, t)
    return finish(per_sample_reduce((pred - target) ** 2, reduction), per_sample)


def score_matching_loss(
    model: Model,
    path: GaussianPath,
    data: Tensor,
    t: Tensor,
    *,
    noise: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
    per_sample: bool = False,
) -> Tensor:
    """Denoising score matching: E || s_theta(x_t, t) - grad log p_t(x_t | data) ||^2.

    The target -noise / beta_t is infinite at t = 1: draw t from [0, 1 - delta].
    """
    if not isinstance(path, GaussianPath):
        raise TypeError("score matching needs a GaussianPath (the conditional score of a general source is unknown)")
    noise, pred = _predict(model, path, data, t, noise, model_kwargs)
    _, beta, _, _ = path.coefficients(t, data)
    return finish(per_sample_reduce((pred + noise / beta) ** 2, reduction), per_sample)


def noise_prediction_loss(
    model: Model,
    path: GaussianPath,
    data: Tensor,
    t: Tensor,
    *,
    noise: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
    per_sample: bool = False,
) -> Tensor:
    """E || noise_theta(x_t, t) - noise ||^2: score matching weighted by beta_t^2 (finite for all t)."""
    if not isinstance(path, GaussianPath):
        raise TypeError("noise prediction needs a GaussianPath")
    noise, pred = _predict(model, path, data, t, noise, model_kwargs)
    return finish(per_sample_reduce((pred - noise) ** 2, reduction), per_sample)


def interpolant_loss(
    model: Model,
    path: InterpolantPath,
    data: Tensor,
    t: Tensor,
    *,
    noise: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
    per_sample: bool = False,
) -> Tensor:
    """The interpolant objective E[ 1/2 |b(x_t, t)|^2 - dI/dt . b(x_t, t) ].

    It equals 1/2 of the flow-matching loss minus 1/2 E|dI/dt|^2 (independent of b), so it has
    the same minimiser b = E[dI/dt | x_t]; its value can be negative.
    """
    noise, b = _predict(model, path, data, t, noise, model_kwargs)
    velocity = path.interpolant_velocity(data, noise, t)
    return finish(per_sample_reduce(0.5 * b**2 - velocity * b, reduction), per_sample)


#: the loss that trains each kind of network output (flow.prediction)
LOSSES: Registry[Callable[..., Tensor]] = Registry("loss", "flow.prediction", [
    ("velocity", flow_matching_loss),
    ("noise", noise_prediction_loss),
    ("score", score_matching_loss),
    ("interpolant", interpolant_loss),
])
