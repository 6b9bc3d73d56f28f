"""toy.gmm_fields: exact marginal fields of a Gaussian mixture on any Gaussian path."""

import pytest
import torch

from imgflow.core import CosineSchedule, GaussianPath, LinearSchedule, SqrtSchedule, convert
from toy.densities import GaussianMixture
from toy.gmm_fields import GaussianMixtureMarginals

SCHEDULES = [LinearSchedule(), CosineSchedule(), SqrtSchedule()]


def _mixture():
    covs = torch.stack([torch.tensor([[0.5, 0.2], [0.2, 0.3]]), torch.eye(2) * 0.2, torch.tensor([[0.3, -0.1], [-0.1, 0.6]])])
    means = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]])
    return GaussianMixture(means, covs, torch.tensor([0.5, 0.3, 0.2]))


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_point_mass_limit_equals_conditional_fields(schedule):
    """One component with covariance 1e-10 I is the point mass z: the marginal fields are the conditional ones."""
    path = GaussianPath(schedule)
    z = torch.tensor([[1.5, -0.7]], dtype=torch.float64)
    marg = GaussianMixtureMarginals(GaussianMixture(z.float(), 1e-10 * torch.eye(2)[None]), path)
    x = torch.randn(64, 2, dtype=torch.float64) * 2
    t = torch.rand(64, dtype=torch.float64) * 0.9
    zz = z.expand_as(x)
    # errors scale like Sigma / beta^4 ~ 1e-10 * 1e4 plus float32 rounding of the stored means
    assert torch.allclose(marg.velocity(x, t), path.conditional_vector_field(x, zz, t), atol=1e-5)
    assert torch.allclose(marg.score(x, t), path.conditional_score(x, zz, t), atol=1e-4)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_score_is_gradient_of_log_density_and_conversions_agree(schedule):
    marg = GaussianMixtureMarginals(_mixture(), GaussianPath(schedule))
    x = torch.randn(50, 2, dtype=torch.float64) * 2
    t = torch.rand(50, dtype=torch.float64) * 0.9 + 0.05
    xr = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(marg.log_density(xr, t).sum(), xr)
    assert torch.allclose(marg.score(x, t), grad, atol=1e-10)
    # the four predictions are tied by the core's conversions
    u = marg.velocity(x, t)
    assert torch.allclose(convert(marg.score(x, t), "score", "velocity", schedule, x, t), u, atol=1e-9)
    assert torch.allclose(convert(u, "velocity", "data", schedule, x, t), marg.data_prediction(x, t), atol=1e-9)
    assert torch.allclose(convert(u, "velocity", "noise", schedule, x, t), marg.noise_prediction(x, t), atol=1e-9)


@pytest.mark.parametrize("schedule", [LinearSchedule(), CosineSchedule()], ids=lambda s: type(s).__name__)
def test_velocity_satisfies_the_continuity_equation(schedule):
    """d/dt log p_t + div u + u . grad log p_t = 0: u transports p_t (independent of the formula for u)."""
    marg = GaussianMixtureMarginals(_mixture(), GaussianPath(schedule))
    x = torch.randn(40, 2, dtype=torch.float64) * 1.5
    t = torch.rand(40, dtype=torch.float64) * 0.8 + 0.1
    h = 1e-5
    dlogp_dt = (marg.log_density(x, t + h) - marg.log_density(x, t - h)) / (2 * h)
    xr = x.clone().requires_grad_(True)
    u = marg.velocity(xr, t)
    div = sum(torch.autograd.grad(u[:, i].sum(), xr, retain_graph=True)[0][:, i] for i in range(2))
    residual = dlogp_dt + div + (u * marg.score(x, t)).sum(1)
    assert residual.abs().max().item() < 1e-6


def test_fields_are_finite_at_t_one_and_match_the_data_density():
    gmm = _mixture()
    marg = GaussianMixtureMarginals(gmm, GaussianPath(LinearSchedule()))
    x = torch.randn(30, 2, dtype=torch.float64) * 2
    one = torch.ones(30, dtype=torch.float64)
    assert torch.isfinite(marg.velocity(x, one)).all()
    assert torch.allclose(marg.log_density(x, one).float(), gmm.log_density(x.float()), atol=1e-4)
    assert torch.allclose(marg.score(x, one).float(), gmm.score(x.float()), atol=1e-3)
    # at t = 0 the marginal is the standard normal whatever the data
    zero = torch.zeros(30, dtype=torch.float64)
    assert torch.allclose(marg.score(x, zero), -x, atol=1e-12)
    # at t = 1 on the linear path u = E[z | x] - E[eps | x] = E[z | x] (E[eps | x] = -beta s = 0)
    assert torch.allclose(marg.velocity(x, one), marg.data_prediction(x, one), atol=1e-12)


def test_sample_follows_p_t():
    torch.manual_seed(0)
    marg = GaussianMixtureMarginals(_mixture(), GaussianPath(CosineSchedule()))
    n, t = 200_000, 0.6
    x = marg.sample(t, n)
    sched = marg.schedule
    a = sched.alpha(torch.tensor(t)).item()
    w, mu = marg.mixture.weights, marg.mixture.means
    mean = a * (w[:, None] * mu).sum(0)
    # mean SE = sqrt(Var / n) < 1.5 / 447 ~ 3.4e-3: 5 SE ~ 0.017
    assert torch.allclose(x.mean(0), mean, atol=0.017)
    assert marg.sample(torch.full((4,), 1.0), 4).shape == (4, 2)
