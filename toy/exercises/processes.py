"""Lab 1's graders: one ODE (Euler) and one SDE (Euler–Maruyama) step, and the drift and diffusion of Brownian
motion, Ornstein–Uhlenbeck and Langevin dynamics, each against the library's process on fixed inputs.

A diffusion may be returned as a number, a (B, 1) column or a (B, D) tensor: it is broadcast to x's shape first,
since all three mean the same isotropic noise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.core.grading import Case, CheckResult, grade
from toy.densities import GaussianMixture
from toy.processes import BrownianMotion, LangevinDynamics, OrnsteinUhlenbeck

__all__ = [
    "check_brownian_motion",
    "check_euler_maruyama_step",
    "check_euler_step",
    "check_langevin",
    "check_ornstein_uhlenbeck",
]

#: float32 arithmetic of a few operations on O(1) numbers
ATOL, RTOL = 1e-5, 1e-4


def _inputs(seed: int, batch: int = 6, dim: int = 2) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=g) * 2, torch.rand(batch, 1, generator=g)


def _velocity(x: Tensor, t: Tensor) -> Tensor:
    """A field that depends on x and t, so a step that evaluates it at the wrong place shows."""
    return torch.stack([-x[:, 1] + t[:, 0], x[:, 0] * torch.cos(3 * t[:, 0])], dim=1)


def check_euler_step(euler_step: Callable[..., Tensor]) -> CheckResult:
    """euler_step(u, x, t, h) -> x + h u(x, t), for a field u(x (B, D), t (B, 1)) -> (B, D)."""
    cases = []
    for seed, h in ((0, 0.1), (1, 0.37)):
        x, t = _inputs(seed)
        cases.append(Case((_velocity, x, t, h), x + h * _velocity(x, t), mistakes={
            "a step backwards in time (x - h u)": x - h * _velocity(x, t),
            "the field evaluated at t + h instead of t": x + h * _velocity(x, t + h),
            "the velocity alone, without x": h * _velocity(x, t)}, start=x))
    return grade("Euler step", euler_step, cases, atol=ATOL, rtol=RTOL)


def check_euler_maruyama_step(euler_maruyama_step: Callable[..., Tensor]) -> CheckResult:
    """euler_maruyama_step(f, g, x, t, h, xi) -> x + f(x, t) h + g(x, t) sqrt(h) xi, xi ~ N(0, I) given."""
    diffusion = lambda x, t: 0.5 + 0.5 * t.expand_as(x)
    cases = []
    for seed, h in ((2, 0.04), (3, 0.25)):
        x, t = _inputs(seed)
        xi = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 10))
        drift, noise = _velocity(x, t) * h, diffusion(x, t) * xi
        cases.append(Case((_velocity, diffusion, x, t, h, xi), x + drift + noise * h**0.5, mistakes={
            "noise scaled by h instead of sqrt(h)": x + drift + noise * h,
            "noise without sqrt(h)": x + drift + noise,
            "no noise term (an Euler step)": x + drift,
            "noise subtracted": x + drift - noise * h**0.5}, start=x))
    return grade("Euler–Maruyama step", euler_maruyama_step, cases, atol=ATOL, rtol=RTOL)


def _coefficients(fn: Callable[..., tuple[Tensor, Tensor]], x: Tensor) -> Callable[..., tuple[Tensor, Tensor]]:
    """fn's (drift, diffusion) with the diffusion broadcast to x's shape (a number or a column is isotropic noise)."""

    def wrapped(*args):
        drift, diffusion = fn(*args)
        return drift, torch.broadcast_to(torch.as_tensor(diffusion, dtype=x.dtype), x.shape)

    return wrapped


def _process_cases(process_for: Callable[..., object], params: list[tuple], extra_mistakes=None) -> list[Case]:
    cases = []
    for n, p in enumerate(params):
        x, t = _inputs(20 + n)
        proc = process_for(*p)
        drift = proc.drift_coefficient(x, t)
        diffusion = proc.diffusion_coefficient(x, t).expand_as(x)
        mistakes = {"the diffusion squared (sigma^2 where sigma goes)": (drift, diffusion**2)}
        if extra_mistakes is not None:
            mistakes |= extra_mistakes(x, t, *p)
        cases.append(Case((x, t, *p), (drift, diffusion), mistakes=mistakes))
    return cases


def check_brownian_motion(coefficients: Callable[..., tuple[Tensor, Tensor]]) -> CheckResult:
    """coefficients(x, t, sigma) -> (drift, diffusion) of dX = sigma dW."""
    cases = _process_cases(BrownianMotion, [(1.0,), (0.3,)])
    fn = lambda x, t, sigma: _coefficients(coefficients, x)(x, t, sigma)
    return grade("Brownian motion", fn, cases, atol=ATOL, rtol=RTOL, names=("drift", "diffusion"))


def check_ornstein_uhlenbeck(coefficients: Callable[..., tuple[Tensor, Tensor]]) -> CheckResult:
    """coefficients(x, t, theta, sigma) -> (drift, diffusion) of dX = -theta X dt + sigma dW."""
    cases = _process_cases(OrnsteinUhlenbeck, [(0.5, 0.8), (2.0, 0.25)],
                           lambda x, t, theta, sigma: {"a drift pushing away from 0 (+theta x)": (theta * x, torch.full_like(x, sigma))})
    fn = lambda x, t, theta, sigma: _coefficients(coefficients, x)(x, t, theta, sigma)
    return grade("Ornstein–Uhlenbeck", fn, cases, atol=ATOL, rtol=RTOL, names=("drift", "diffusion"))


_LANGEVIN_TARGET = GaussianMixture.symmetric_2D(nmodes=3, std=1.0, scale=3.0)


def check_langevin(coefficients: Callable[..., tuple[Tensor, Tensor]]) -> CheckResult:
    """coefficients(x, t, score, sigma) -> (drift, diffusion) of dX = sigma^2/2 score(X) dt + sigma dW."""
    score = _LANGEVIN_TARGET.score

    def mistakes(x, t, sigma):
        noise = torch.full_like(x, sigma)
        return {"sigma * score where sigma^2/2 * score goes": (sigma * score(x), noise),
                "sigma^2 * score (the 1/2 is missing)": (sigma**2 * score(x), noise)}

    cases = _process_cases(lambda sigma: LangevinDynamics(_LANGEVIN_TARGET, sigma), [(0.6,), (1.5,)], mistakes)
    cases = [Case((c.args[0], c.args[1], score, c.args[2]), c.expected, c.mistakes) for c in cases]
    fn = lambda x, t, s, sigma: _coefficients(coefficients, x)(x, t, s, sigma)
    return grade("Langevin dynamics", fn, cases, atol=ATOL, rtol=RTOL, names=("drift", "diffusion"))
