"""The classic 2-D processes as core ODE/SDE subclasses (integrate them with the core solvers).

Drift and diffusion are deterministic functions of (x, t); only a solver draws noise.
x is (B, D), t is (B,); a scalar diffusion is returned as (B, 1) and broadcasts over D.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from imgflow.core import ODE, SDE, expand_like

__all__ = ["BrownianMotion", "LangevinDynamics", "LinearDecayODE", "OrnsteinUhlenbeck", "Scoreable"]


class Scoreable(Protocol):
    """Anything with a score grad log p(x): (B, D) -> (B, D)."""

    def score(self, x: Tensor) -> Tensor: ...


def _constant(value: float, x: Tensor, t: Tensor) -> Tensor:
    return torch.full_like(expand_like(t, x), float(value))


class LinearDecayODE(ODE):
    """dx/dt = -theta x, whose flow is x_t = exp(-theta t) x_0 (the solvers' test equation)."""

    def __init__(self, theta: float) -> None:
        self.theta = float(theta)

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.theta * x

    def exact(self, x0: Tensor, t: float) -> Tensor:
        """The exact flow exp(-theta t) x0."""
        return x0 * torch.exp(torch.tensor(-self.theta * t, dtype=x0.dtype))


class BrownianMotion(SDE):
    """dX = sigma dW: X_t - X_0 ~ N(0, sigma^2 t I)."""

    def __init__(self, sigma: float) -> None:
        self.sigma = float(sigma)

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return _constant(self.sigma, x, t)


class OrnsteinUhlenbeck(SDE):
    """dX = -theta X dt + sigma dW.

    From X_0 = x0: mean x0 exp(-theta t), variance D (1 - exp(-2 theta t)) with
    D = sigma^2 / (2 theta), the stationary variance.
    """

    def __init__(self, theta: float, sigma: float) -> None:
        self.theta, self.sigma = float(theta), float(sigma)

    @property
    def stationary_variance(self) -> float:
        """D = sigma^2 / (2 theta)."""
        return self.sigma**2 / (2 * self.theta)

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return -self.theta * x

    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return _constant(self.sigma, x, t)

    def variance(self, t: Tensor | float, x0_var: float = 0.0) -> Tensor:
        """Var[X_t] per coordinate from a start of variance x0_var: D + (x0_var - D) exp(-2 theta t)."""
        t = torch.as_tensor(t, dtype=torch.float64)
        d = self.stationary_variance
        return d + (x0_var - d) * torch.exp(-2 * self.theta * t)


class LangevinDynamics(SDE):
    """Overdamped Langevin dX = sigma^2/2 grad log p(X) dt + sigma dW; p is its stationary law."""

    def __init__(self, density: Scoreable, sigma: float) -> None:
        self.density = density
        self.sigma = float(sigma)

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return 0.5 * self.sigma**2 * self.density.score(x)

    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return _constant(self.sigma, x, t)
