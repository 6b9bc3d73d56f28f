"""toy.processes: drift/diffusion of the classic processes, simulated with the core solvers."""

import math

import pytest
import torch

from imgflow.core import SDE, EulerMaruyamaSolver, RK4Solver, uniform_time_grid
from toy.densities import Gaussian, GaussianMixture
from toy.processes import BrownianMotion, LangevinDynamics, LinearDecayODE, OrnsteinUhlenbeck


def test_coefficients_are_deterministic_and_have_the_right_form():
    x = torch.randn(10, 2)
    t = torch.rand(10)
    gmm = GaussianMixture.symmetric_2D(3, 1.0, 2.0)
    for sde, drift in (
        (BrownianMotion(0.7), torch.zeros_like(x)),
        (OrnsteinUhlenbeck(2.0, 0.7), -2.0 * x),
        (LangevinDynamics(gmm, 0.7), 0.5 * 0.49 * gmm.score(x)),
    ):
        assert isinstance(sde, SDE)
        assert torch.allclose(sde.drift_coefficient(x, t), drift, atol=1e-6)
        g1, g2 = sde.diffusion_coefficient(x, t), sde.diffusion_coefficient(x, t)
        assert torch.equal(g1, g2)
        assert torch.allclose(g1.expand_as(x), torch.full_like(x, 0.7))


def test_linear_decay_ode_matches_exact_flow():
    ode = LinearDecayODE(1.3)
    x0 = torch.randn(5, 2, dtype=torch.float64)
    x = RK4Solver(ode).simulate(x0, uniform_time_grid(100, 0.0, 2.0).double())
    # RK4 global error ~ (theta h)^5 / 120 * steps ~ 1e-10
    assert torch.allclose(x, ode.exact(x0, 2.0), atol=1e-8)


def test_ou_variance_formula_and_simulation():
    ou = OrnsteinUhlenbeck(theta=1.5, sigma=0.9)
    d = 0.81 / 3.0
    assert ou.stationary_variance == pytest.approx(d)
    assert ou.variance(0.0, x0_var=0.0).item() == pytest.approx(0.0)
    assert ou.variance(100.0).item() == pytest.approx(d)
    n = 40_000
    gen = torch.Generator().manual_seed(0)
    x = EulerMaruyamaSolver(ou, generator=gen).simulate(torch.zeros(n, 1), uniform_time_grid(200, 0.0, 0.5))
    # EM bias O(theta h) ~ 0.4% of the variance, sampling SE sqrt(2/n) = 0.7%: allow 5 SE + bias
    expected = ou.variance(0.5).item()
    assert x.var().item() == pytest.approx(expected, rel=5 * math.sqrt(2 / n) + 0.004)


def test_langevin_keeps_its_target_stationary():
    target = Gaussian(torch.tensor([1.0, -1.0]), torch.eye(2) * 0.5)
    n = 20_000
    x0 = target.sample(n)
    gen = torch.Generator().manual_seed(1)
    x = EulerMaruyamaSolver(LangevinDynamics(target, 1.0), generator=gen).simulate(x0, uniform_time_grid(100, 0.0, 2.0))
    # unadjusted Langevin (h = 0.02): stationary variance s^2 / (1 - sigma^2 h / (4 s^2)), +1% here;
    # sampling SE of the pooled variance sqrt(2 / 2n) = 0.7%, of each mean coordinate sqrt(0.5 / n)
    assert torch.allclose(x.mean(0), target.mean, atol=5 * math.sqrt(0.5 / n))
    assert x.var(0).mean().item() == pytest.approx(0.5, rel=5 * math.sqrt(2 / (2 * n)) + 0.01)
