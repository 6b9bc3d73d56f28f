"""Losses, dynamics and solvers of the shared core."""

import math

import pytest
import torch

from imgflow.core import (
    ODE,
    SDE,
    AdaptiveSolver,
    ClassifierFreeGuidance,
    ConditionalVectorFieldODE,
    ConditionalVectorFieldSDE,
    CosineSchedule,
    EulerMaruyamaSolver,
    EulerSolver,
    GaussianPath,
    HeunSolver,
    InterpolantSDE,
    LinearPath,
    LinearSchedule,
    MidpointSolver,
    ModelField,
    RK4Solver,
    convert,
    expand_like,
    flow_matching_loss,
    interpolant_loss,
    make_solver,
    noise_prediction_loss,
    score_matching_loss,
    uniform_time_grid,
)


def point_mass_velocity(path, point):
    """The exact marginal velocity when the data is the single point `point`."""

    def field(x, t):
        return path.conditional_vector_field(x, point.expand_as(x), t)

    return field


def test_flow_matching_loss_is_zero_at_the_exact_field_and_reductions_scale():
    torch.manual_seed(0)
    path = GaussianPath(CosineSchedule())
    point = torch.randn(1, 3, 4, 4)
    data = point.expand(16, 3, 4, 4)
    t = torch.rand(16) * 0.9
    exact = point_mass_velocity(path, point)
    assert flow_matching_loss(exact, path, data, t).item() < 1e-8
    wrong = lambda x, t: exact(x, t) + 1.0
    noise = torch.randn_like(data)
    mean = flow_matching_loss(wrong, path, data, t, noise=noise)
    summed = flow_matching_loss(wrong, path, data, t, noise=noise, reduction="sum")
    per_sample = flow_matching_loss(wrong, path, data, t, noise=noise, per_sample=True)
    assert per_sample.shape == (16,) and torch.allclose(per_sample.mean(), mean)
    assert mean.item() == pytest.approx(1.0, rel=1e-4)
    assert summed.item() == pytest.approx(48.0, rel=1e-4)


def test_interpolant_loss_is_half_fm_loss_minus_a_constant():
    torch.manual_seed(0)
    path = LinearPath()
    data, noise, t = torch.randn(32, 2), torch.randn(32, 2), torch.rand(32)
    dI = path.interpolant_velocity(data, noise, t)
    const = 0.5 * (dI**2).mean(1).mean()
    for shift in (0.0, 0.3, -2.0):
        model = lambda x, t, s=shift: torch.sin(x) + s
        fm = flow_matching_loss(model, path, data, t, noise=noise)
        il = interpolant_loss(model, path, data, t, noise=noise)
        assert il.item() == pytest.approx(0.5 * fm.item() - const.item(), abs=1e-5)


def test_score_and_noise_losses_vanish_at_their_targets():
    torch.manual_seed(0)
    path = GaussianPath(LinearSchedule())
    point = torch.randn(1, 2)
    data = point.expand(64, 2)
    t = torch.rand(64) * 0.9
    score = lambda x, t: path.conditional_score(x, point.expand_as(x), t)
    noise = lambda x, t: convert(score(x, t), "score", "noise", path.schedule, x, t)
    assert score_matching_loss(score, path, data, t).item() < 1e-8
    assert noise_prediction_loss(noise, path, data, t).item() < 1e-8
    with pytest.raises(TypeError, match="GaussianPath"):
        score_matching_loss(score, LinearPath(), data, t)


def test_diffusion_coefficient_is_deterministic():
    path = GaussianPath(LinearSchedule())
    sde = ConditionalVectorFieldSDE(path, torch.zeros(8, 2), sigma=0.7)
    x, t = torch.randn(8, 2), torch.full((8,), 0.2)
    g1, g2 = sde.diffusion_coefficient(x, t), sde.diffusion_coefficient(x, t)
    assert torch.equal(g1, g2)
    assert torch.allclose(g1, torch.full_like(g1, 0.7))


def test_classifier_free_guidance_combines_predictions():
    calls = []

    def model(x, t, y):
        calls.append(x.shape[0])
        return x * 0 + y.float()[:, None]

    x, t, y = torch.randn(4, 2), torch.rand(4), torch.tensor([1, 2, 3, 4])
    for w in (0.0, 1.0, 3.0):
        out = ClassifierFreeGuidance(model, y, w, null_label=10)(x, t)
        expected = (1 - w) * 10 + w * y.float()
        assert torch.allclose(out, expected[:, None].expand(4, 2))
    assert calls == [4, 4, 8]  # w = 3 makes one batched call of 2B


def test_model_field_converts_noise_predictions():
    path = GaussianPath(CosineSchedule())
    point = torch.randn(1, 2)
    exact_u = point_mass_velocity(path, point)
    noise_model = lambda x, t: convert(exact_u(x, t), "velocity", "noise", path.schedule, x, t)
    field = ModelField(noise_model, prediction="noise", schedule=path.schedule)
    x, t = torch.randn(16, 2), torch.rand(16) * 0.8 + 0.1
    assert torch.allclose(field(x, t), exact_u(x, t), atol=1e-5)
    assert field.singular_times == (0.0,)


class Decay(ODE):
    def __init__(self, theta):
        self.theta = theta

    def drift_coefficient(self, x, t):
        return -self.theta * x


@pytest.mark.parametrize(
    "solver_cls,order,nfe_per_step",
    [(EulerSolver, 1, 1), (MidpointSolver, 2, 2), (HeunSolver, 2, 2), (RK4Solver, 4, 4)],
)
def test_fixed_step_orders_and_nfe(solver_cls, order, nfe_per_step):
    x0 = torch.ones(2, 3, dtype=torch.float64)
    exact = x0 * math.exp(-1.5)
    errs = []
    for n in (8, 16, 32):
        solver = solver_cls(Decay(1.5))
        x = solver.simulate(x0, uniform_time_grid(n).double())
        assert solver.nfe == n * nfe_per_step
        errs.append((x - exact).abs().max().item())
    observed = math.log2(errs[1] / errs[2])
    # the leading error term dominates at these step sizes: within 0.25 of the order
    assert abs(observed - order) < 0.25


def test_backward_integration_returns_to_start():
    x0 = torch.randn(5, 2, dtype=torch.float64)
    ts = uniform_time_grid(50).double()
    x1 = RK4Solver(Decay(2.0)).simulate(x0, ts)
    back = RK4Solver(Decay(2.0)).simulate(x1, ts.flip(0))
    assert torch.allclose(back, x0, atol=1e-8)


def test_adaptive_solver_tolerance_and_trajectory():
    x0 = torch.ones(4, 2, dtype=torch.float64)
    solver = AdaptiveSolver(Decay(3.0), rtol=1e-8, atol=1e-8)
    ts = uniform_time_grid(5).double()
    traj = solver.simulate_with_trajectory(x0, ts)
    assert traj.shape == (4, 6, 2)
    assert torch.allclose(traj[:, :, 0], torch.exp(-3.0 * ts)[None].expand(4, 6), atol=1e-6)
    assert solver.nfe > 0


def test_solvers_refuse_singular_points():
    path = LinearPath()
    ode = ConditionalVectorFieldODE(path, torch.zeros(3, 2))
    x = torch.randn(3, 2)
    for name in ("heun", "rk4", "adaptive"):
        with pytest.raises(ValueError, match="singular"):
            make_solver(name, ode).simulate(x, uniform_time_grid(10))
    # Euler and midpoint never evaluate the end point of the grid
    out = EulerSolver(ode).simulate(x, uniform_time_grid(10))
    assert torch.isfinite(out).all()
    out = RK4Solver(ode).simulate(x, uniform_time_grid(10, t_end=0.999))
    assert torch.isfinite(out).all()


def test_euler_maruyama_increment_has_variance_g2_h():
    class Brownian(SDE):
        def drift_coefficient(self, x, t):
            return torch.zeros_like(x)

        def diffusion_coefficient(self, x, t):
            return torch.full_like(expand_like(t, x), 0.5)

    gen = torch.Generator().manual_seed(0)
    n = 100_000
    solver = EulerMaruyamaSolver(Brownian(), generator=gen)
    x = solver.simulate(torch.zeros(n, 1), torch.tensor([0.0, 0.4]))
    # Var = 0.25 * 0.4 = 0.1; the sample variance has std 0.1 * sqrt(2 / n) = 4.5e-4: 5 sigma
    assert x.var().item() == pytest.approx(0.1, abs=2.3e-3)


def test_interpolant_sde_is_finite_at_t_one_and_reduces_to_ode():
    path = GaussianPath(LinearSchedule())
    point = torch.randn(1, 2)
    u = point_mass_velocity(path, point)
    safe_u = lambda x, t: u(x, t.clamp(max=0.999))
    sde = InterpolantSDE(safe_u, path.schedule, epsilon=1.0)
    x = torch.randn(16, 2)
    t1 = torch.ones(16)
    assert torch.isfinite(sde.drift_coefficient(x, t1)).all()
    assert torch.equal(sde.diffusion_coefficient(x, t1), torch.zeros(16, 1))
    ode_sde = InterpolantSDE(safe_u, path.schedule, epsilon=0.0)
    assert torch.equal(ode_sde.drift_coefficient(x, t1 * 0.5), safe_u(x, t1 * 0.5))
