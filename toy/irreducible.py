"""Why the flow-matching loss stops well above zero: its irreducible part, computed with the exact marginal field.

The conditional loss L(theta) = E_{t, z, eps} |u_theta(x_t, t) - u_t(x_t | z)|^2 (z data, eps noise,
x_t = alpha_t z + beta_t eps) splits, because the marginal field u_t(x) = E[u_t(x_t | z) | x_t = x] is the
conditional mean of the target, into

    L(theta) = E |u_theta(x_t, t) - u_t(x_t)|^2  +  L_irr,     L_irr = E_{t, x_t} Var(u_t(x_t | z) | x_t),

the first term the only one training can reduce (zero for the exact field), the second a property of the
data and the path: many (z, eps) pairs pass through the same x_t and ask for different velocities. For a
Gaussian mixture the project has u_t exactly (`toy.GaussianMixtureMarginals`), so L_irr is a Monte Carlo
mean of |u_t(x_t | z) - u_t(x_t)|^2 with an honest standard error. Units: those of the core's
`flow_matching_loss` with reduction "mean" (the mean over the D coordinates), what `toy.train_flow_matching`
reports; t ~ U[t_min, t_max] as that trainer draws it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from imgflow.core import GaussianPath
from toy.densities import GaussianMixture
from toy.gmm_fields import GaussianMixtureMarginals


@dataclass(frozen=True)
class IrreducibleLoss:
    """L_irr estimated from `num_samples` draws of (t, z, eps): value +- standard_error (one sigma)."""

    value: float
    standard_error: float
    num_samples: int

    def __str__(self) -> str:
        return f"{self.value:.4f} +- {self.standard_error:.4f} ({self.num_samples} samples)"


def irreducible_flow_matching_loss(mixture: GaussianMixture, path: GaussianPath, num_samples: int = 200_000, *,
                                   t_range: tuple[float, float] = (0.0, 1.0), seed: int = 0,
                                   batch_size: int = 50_000) -> IrreducibleLoss:
    """L_irr = E |u_t(x_t | z) - u_t(x_t)|^2 / D for data ~ mixture on a Gaussian path (module docstring).

    z ~ mixture, eps ~ N(0, I), t ~ U[t_range]; the conditional target is path.interpolant_velocity(z, eps, t),
    the marginal one the mixture's exact u_t. Per-sample values are averaged; the standard error is their
    standard deviation / sqrt(num_samples).
    """
    if num_samples < 2 or batch_size < 1:
        raise ValueError(f"num_samples must be >= 2 and batch_size >= 1, got {num_samples} and {batch_size}")
    exact = GaussianMixtureMarginals(mixture, path)
    g = torch.Generator().manual_seed(seed)
    total, total_sq, done = 0.0, 0.0, 0
    t_min, t_max = t_range
    with torch.no_grad():
        while done < num_samples:
            n = min(batch_size, num_samples - done)
            data = mixture.sample(n, generator=g)
            noise = torch.randn(data.shape, generator=g)
            t = t_min + (t_max - t_min) * torch.rand(n, generator=g)
            x_t = path.interpolate(data, noise, t)
            err = (path.interpolant_velocity(data, noise, t) - exact.velocity(x_t, t)).double().pow(2).mean(1)
            total, total_sq, done = total + float(err.sum()), total_sq + float(err.pow(2).sum()), done + n
    mean = total / done
    var = max(total_sq / done - mean**2, 0.0) * done / (done - 1)
    return IrreducibleLoss(mean, math.sqrt(var / done), done)


def plot_loss_against_floor(history: list[float], floor: IrreducibleLoss, path, window: int = 50):
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


__all__ = ["IrreducibleLoss", "irreducible_flow_matching_loss", "plot_loss_against_floor"]
