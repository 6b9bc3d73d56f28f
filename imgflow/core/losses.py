"""Training objectives on an interpolant path, shared by the 2-D MLPs and the image U-Net.

Normalisation (all losses): a per-sample squared norm divided by the number of elements
per sample D ("mean", the default: comparable across image sizes, and what published image
recipes clip gradients against), or not divided ("sum": the per-sample sum of squares
||.||^2 of the math); then averaged over the batch. The interpolant objective is
normalised the same way, so it equals the flow-matching loss minus a model-independent term.

`model` is called as model(x_t, t, **model_kwargs) with x_t (B, ...) and t (B,).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

from torch import Tensor

from imgflow.core.paths import GaussianPath, InterpolantPath

Reduction = Literal["mean", "sum"]
Model = Callable[..., Tensor]


def per_sample_reduce(values: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Reduce (B, ...) to (B,): sum over non-batch dims, divided by D for 'mean'."""
    if reduction not in ("mean", "sum"):
        raise ValueError(f"unknown reduction {reduction!r}; use 'mean' or 'sum'")
    flat = values.flatten(1)
    return flat.mean(1) if reduction == "mean" else flat.sum(1)


def _predict(
    model: Model, path: InterpolantPath, z: Tensor, t: Tensor, x0: Tensor | None, model_kwargs: dict[str, Any] | None
) -> tuple[Tensor, Tensor]:
    """Draw x0 (unless given), form x_t, evaluate the model there: returns (x0, prediction)."""
    x0 = path.sample_source(z) if x0 is None else x0
    return x0, model(path.interpolate(z, x0, t), t, **(model_kwargs or {}))


def flow_matching_loss(
    model: Model,
    path: InterpolantPath,
    z: Tensor,
    t: Tensor,
    *,
    x0: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Conditional flow matching: E || u_theta(x_t, t) - u_t(x_t | z) ||^2.

    The target u_t(x_t | z) = d_alpha z + d_beta x0 is evaluated from (z, x0) directly, so
    it stays finite at t = 1. z: (B, ...) data, t: (B,), x0: optional source draw.
    Returns a scalar.
    """
    x0, pred = _predict(model, path, z, t, x0, model_kwargs)
    target = path.interpolant_velocity(z, x0, t)
    return per_sample_reduce((pred - target) ** 2, reduction).mean()


def score_matching_loss(
    model: Model,
    path: GaussianPath,
    z: Tensor,
    t: Tensor,
    *,
    x0: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """Denoising score matching: E || s_theta(x_t, t) - grad log p_t(x_t | z) ||^2.

    The target -x0 / beta_t is infinite at t = 1: draw t from [0, 1 - delta].
    """
    if not isinstance(path, GaussianPath):
        raise TypeError("score matching needs a GaussianPath (the conditional score of a general source is unknown)")
    x0, pred = _predict(model, path, z, t, x0, model_kwargs)
    _, beta, _, _ = path.coefficients(t, z)
    return per_sample_reduce((pred + x0 / beta) ** 2, reduction).mean()


def noise_prediction_loss(
    model: Model,
    path: GaussianPath,
    z: Tensor,
    t: Tensor,
    *,
    x0: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """E || eps_theta(x_t, t) - x0 ||^2: score matching weighted by beta_t^2 (finite for all t)."""
    if not isinstance(path, GaussianPath):
        raise TypeError("noise prediction needs a GaussianPath")
    x0, pred = _predict(model, path, z, t, x0, model_kwargs)
    return per_sample_reduce((pred - x0) ** 2, reduction).mean()


def interpolant_loss(
    model: Model,
    path: InterpolantPath,
    z: Tensor,
    t: Tensor,
    *,
    x0: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    reduction: Reduction = "mean",
) -> Tensor:
    """The interpolant objective E[ 1/2 |b(x_t, t)|^2 - dI/dt . b(x_t, t) ].

    It equals 1/2 of the flow-matching loss minus 1/2 E|dI/dt|^2 (independent of b), so it has
    the same minimiser b = E[dI/dt | x_t]; its value can be negative.
    """
    x0, b = _predict(model, path, z, t, x0, model_kwargs)
    velocity = path.interpolant_velocity(z, x0, t)
    return per_sample_reduce(0.5 * b**2 - velocity * b, reduction).mean()


LOSSES: dict[str, Callable[..., Tensor]] = {
    "velocity": flow_matching_loss,
    "noise": noise_prediction_loss,
    "score": score_matching_loss,
    "interpolant": interpolant_loss,
}
