"""Why the flow-matching loss stops well above zero: its irreducible part, computed with the exact marginal field.

The conditional loss L(theta) = E_{t, z, eps} |u_theta(x_t, t) - u_t(x_t | z)|^2 (z data, eps noise,
x_t = alpha_t z + beta_t eps) splits, because the marginal field u_t(x) = E[u_t(x_t | z) | x_t = x] is the
conditional mean of the target, into

    L(theta) = E |u_theta(x_t, t) - u_t(x_t)|^2  +  L_irr,     L_irr = E_{t, x_t} Var(u_t(x_t | z) | x_t),

the first term the only one training can reduce (zero for the exact field), the second a property of the
data, the path and the time distribution: many (z, eps) pairs pass through the same x_t and ask for different
velocities. For a Gaussian mixture the project has u_t exactly (`toy.GaussianMixtureMarginals`), so both terms
are Monte Carlo means with honest standard errors: `irreducible_flow_matching_loss` (L_irr, a mean of
|u_t(x_t | z) - u_t(x_t)|^2) and `flow_matching_excess` (the reducible term of a given model).

Units: those of the core's `flow_matching_loss` with reduction "mean" (the squared norm divided by the D
coordinates), which is what `toy.train_flow_matching` reports. Times: t = t_min + (t_max - t_min) s with s from
the core's `sample_times` ("uniform", what the toy trainer draws on t_range = (0, 1); or "logit_normal", the
image trainer's `flow.time_sampling` option). L_irr depends on the time distribution: compare a loss only with the
floor of the distribution it was trained and logged with.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from imgflow.core import GaussianPath
from imgflow.core.time_sampling import sample_times
from toy.densities import GaussianMixture
from toy.gmm_fields import GaussianMixtureMarginals

__all__ = ["LossEstimate", "flow_matching_excess", "irreducible_flow_matching_loss", "plot_loss_against_floor"]


@dataclass(frozen=True)
class LossEstimate:
    """A Monte Carlo mean of per-sample losses from `num_samples` draws of (t, z, eps): value +- standard_error (one sigma)."""

    value: float
    standard_error: float
    num_samples: int

    def __str__(self) -> str:
        return f"{self.value:.4f} +- {self.standard_error:.4f} ({self.num_samples} samples)"


#: per_sample(x_t (n, D), t (n,), conditional target (n, D), exact u_t(x_t) (n, D)) -> (n,) squared errors / D
PerSample = Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]


def _estimate(per_sample: PerSample, mixture: GaussianMixture, path: GaussianPath, num_samples: int, *,
              t_range: tuple[float, float], time_sampling: str, time_mean: float, time_std: float, seed: int,
              batch_size: int) -> LossEstimate:
    """Draw z ~ mixture, eps ~ N(0, I), t (module docstring) in batches from one generator; mean and SE of per_sample."""
    if num_samples < 2 or batch_size < 1:
        raise ValueError(f"num_samples must be >= 2 and batch_size >= 1, got {num_samples} and {batch_size}")
    t_min, t_max = t_range
    if not 0.0 <= t_min <= t_max <= 1.0:
        raise ValueError(f"t_range must satisfy 0 <= t_min <= t_max <= 1, got {t_range}")
    exact = GaussianMixtureMarginals(mixture, path)
    g = torch.Generator().manual_seed(seed)
    total, total_sq, done = 0.0, 0.0, 0
    with torch.no_grad():
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            data = mixture.sample(n, generator=g)
            noise = torch.randn(data.shape, generator=g)
            t = t_min + (t_max - t_min) * sample_times(n, time_sampling, mean=time_mean, std=time_std, generator=g)
            x_t = path.interpolate(data, noise, t)
            err = per_sample(x_t, t, path.interpolant_velocity(data, noise, t), exact.velocity(x_t, t)).double()
            total, total_sq, done = total + float(err.sum()), total_sq + float(err.pow(2).sum()), done + n
    mean = total / done
    var = max(total_sq / done - mean**2, 0.0) * done / (done - 1)
    return LossEstimate(mean, math.sqrt(var / done), done)


def irreducible_flow_matching_loss(mixture: GaussianMixture, path: GaussianPath, num_samples: int = 200_000, *,
                                   t_range: tuple[float, float] = (0.0, 1.0), time_sampling: str = "uniform",
                                   time_mean: float = 0.0, time_std: float = 1.0, seed: int = 0,
                                   batch_size: int = 50_000) -> LossEstimate:
    """L_irr = E_{t, z, eps} |u_t(x_t | z) - u_t(x_t)|^2 / D for data ~ mixture (D dims) on a Gaussian path.

    The smallest value any model's flow-matching loss can have in expectation (module docstring): z ~ mixture,
    eps ~ N(0, I), t from `time_sampling` scaled to `t_range`; the conditional target is
    path.interpolant_velocity(z, eps, t) (= z - eps on the linear path), the marginal one the mixture's exact
    u_t. The estimate is unbiased; its standard error is the per-sample standard deviation / sqrt(num_samples).
    The draws are fixed by (seed, batch_size); another batch_size draws other numbers from the same distribution.
    """
    def per_sample(x_t: Tensor, t: Tensor, target: Tensor, marginal: Tensor) -> Tensor:
        return (target - marginal).double().pow(2).mean(1)

    return _estimate(per_sample, mixture, path, num_samples, t_range=t_range, time_sampling=time_sampling,
                     time_mean=time_mean, time_std=time_std, seed=seed, batch_size=batch_size)


def flow_matching_excess(model: Callable[[Tensor, Tensor], Tensor], mixture: GaussianMixture, path: GaussianPath,
                         num_samples: int = 200_000, *, t_range: tuple[float, float] = (0.0, 1.0),
                         time_sampling: str = "uniform", time_mean: float = 0.0, time_std: float = 1.0, seed: int = 0,
                         batch_size: int = 50_000) -> LossEstimate:
    """E_{t, x_t} |u_theta(x_t, t) - u_t(x_t)|^2 / D: the part of the flow-matching loss that training reduces.

    model(x (n, D), t (n,)) -> (n, D), evaluated without gradients; x_t and t are drawn as in
    `irreducible_flow_matching_loss` (the same seed gives the same draws), u_t is the mixture's exact field.
    Its flow-matching loss in expectation is this plus L_irr. Unlike the training loss, this has no noisy target,
    so a small excess is measured precisely where the loss's own batch noise hides it.
    """
    def per_sample(x_t: Tensor, t: Tensor, target: Tensor, marginal: Tensor) -> Tensor:
        return (model(x_t, t).double() - marginal.double()).pow(2).mean(1)

    return _estimate(per_sample, mixture, path, num_samples, t_range=t_range, time_sampling=time_sampling,
                     time_mean=time_mean, time_std=time_std, seed=seed, batch_size=batch_size)


def plot_loss_against_floor(history: list[float], floor: LossEstimate, path, window: int = 50):
    """A training curve (per-step losses and their running mean over `window` steps) with L_irr as a line; saves a PNG."""
    from toy.plotting import save_figure, subplots

    fig, (ax,) = subplots(1, size=4.5)
    ax.plot(history, lw=0.4, alpha=0.4, color="tab:blue", label="loss per step")
    smooth = torch.tensor(history).unfold(0, window, 1).mean(1) if len(history) >= window else torch.tensor(history)
    ax.plot(range(window - 1, window - 1 + len(smooth)), smooth, color="tab:blue", label=f"mean of {window} steps")
    ax.axhline(floor.value, color="k", ls="--", label=f"irreducible part {floor.value:.3f}")
    ax.set(xlabel="step", ylabel="flow-matching loss", ylim=(0, max(2.5 * floor.value, float(smooth[-1]) * 1.5)))
    ax.legend(fontsize=8)
    return save_figure(fig, path)
