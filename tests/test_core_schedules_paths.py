"""Schedules, paths and conversions of the shared core."""

import math
import re

import pytest
import torch

from imgflow.core import (
    PREDICTIONS,
    CallableSchedule,
    CosineSchedule,
    GaussianPath,
    LinearPath,
    LinearSchedule,
    SqrtSchedule,
    convert,
    expand_like,
)

SCHEDULES = [LinearSchedule(), SqrtSchedule(), CosineSchedule()]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
def test_schedule_boundaries_and_derivatives(schedule):
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(schedule.alpha(t), torch.tensor([0.0, 1.0], dtype=torch.float64))
    assert torch.allclose(schedule.beta(t), torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-12)
    # central differences have error O(h^2) ~ 1e-10 for smooth schedules away from t = 1
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-5
    for f, df in ((schedule.alpha, schedule.d_alpha), (schedule.beta, schedule.d_beta)):
        fd = (f(t + h) - f(t - h)) / (2 * h)
        assert torch.allclose(df(t), fd, atol=1e-8)


@pytest.mark.parametrize("reference", [LinearSchedule(), CosineSchedule(), SqrtSchedule()], ids=lambda s: type(s).__name__)
def test_callable_schedule_autograd_matches_analytic(reference):
    sched = CallableSchedule(reference.alpha, reference.beta)
    t = torch.linspace(0.0, 0.99, 50, dtype=torch.float64)
    assert torch.allclose(sched.d_alpha(t), reference.d_alpha(t), atol=1e-12)
    assert torch.allclose(sched.d_beta(t), reference.d_beta(t), atol=1e-12)


def test_expand_like_shapes():
    x = torch.zeros(4, 3, 8, 8)
    assert expand_like(torch.rand(4), x).shape == (4, 1, 1, 1)
    assert expand_like(torch.rand(4, 1), x).shape == (4, 1, 1, 1)
    assert expand_like(0.5, torch.zeros(4, 2)).shape == (1, 1)
    assert expand_like(torch.rand(4), torch.zeros(4, 2)).shape == (4, 1)  # 2-D points: the same call as images
    with pytest.raises(ValueError, match="does not match"):
        expand_like(torch.rand(3), x)


def test_expand_like_scales_samples_where_plain_broadcasting_scales_coordinates():
    """The learners' bug in numbers: for B = 2 points (2, 2), (B,) * x broadcasts silently but along the coordinates."""
    t, x = torch.tensor([0.0, 1.0]), torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(expand_like(t, x) * x, torch.tensor([[0.0, 0.0], [3.0, 4.0]]))  # sample 0 at t = 0, sample 1 at t = 1
    assert torch.equal(t * x, torch.tensor([[0.0, 2.0], [0.0, 4.0]]))  # what t * x does instead: coordinate 0 zeroed
    images = torch.ones(2, 3, 4, 4)
    assert torch.equal((expand_like(t, images) * images).sum((1, 2, 3)), torch.tensor([0.0, 48.0]))
    with pytest.raises(RuntimeError):  # and for images plain (B,) * x fails unless W happens to be B (or B = 1)
        torch.rand(2) * torch.ones(2, 3, 4, 5)
    for bad, like in ((torch.rand(3), torch.zeros(4, 2)), (torch.rand(4, 2), torch.zeros(4, 2)), (torch.rand(4, 3), images)):
        with pytest.raises(ValueError, match=re.escape(f"time of shape {tuple(bad.shape)} does not match a batch of shape {tuple(like.shape)}")):
            expand_like(bad, like)


def test_gaussian_path_moments_and_fields():
    torch.manual_seed(0)
    path = GaussianPath(CosineSchedule())
    n = 200_000
    data = torch.tensor([[2.0, -1.0]]).expand(n, 2)
    t = torch.full((n,), 0.3)
    x = path.sample_conditional_path(data, t)
    a, b = math.sin(0.15 * math.pi), math.cos(0.15 * math.pi)
    # sample mean error ~ b / sqrt(n) ~ 2e-3 per coordinate: 5 sigma = 1e-2
    assert torch.allclose(x.mean(0), a * data[0], atol=1e-2)
    # sample variance error ~ b^2 sqrt(2/n) ~ 2.5e-3: 5 sigma = 1.3e-2
    assert torch.allclose(x.var(0), torch.full((2,), b * b), atol=1.3e-2)

    noise = torch.randn(5, 2)
    points = torch.randn(5, 2)
    tt = torch.rand(5) * 0.9
    xt = path.interpolate(points, noise, tt)
    assert torch.allclose(path.conditional_vector_field(xt, points, tt), path.interpolant_velocity(points, noise, tt), atol=1e-5)
    beta = path.schedule.beta(tt)[:, None]
    assert torch.allclose(path.conditional_score(xt, points, tt), -noise / beta, atol=1e-4)


def test_linear_path_with_arbitrary_source():
    class Uniform:
        def sample(self, n):
            return torch.rand(n, 2) + 5.0

    path = LinearPath(p_simple=Uniform())
    data = torch.zeros(1000, 2)
    x_start = path.sample_conditional_path(data, torch.zeros(1000))
    assert x_start.min() >= 5.0 and x_start.max() <= 6.0  # t = 0 is the source
    assert torch.equal(path.sample_conditional_path(data, torch.ones(1000)), data)  # t = 1 is the data
    noise = path.sample_source(data)
    t = torch.rand(1000) * 0.99
    xt = path.interpolate(data, noise, t)
    assert torch.allclose(path.conditional_vector_field(xt, data, t), data - noise, atol=1e-3)


def _point_mass_truth(schedule, x, t, z0):
    """Exact fields when the data is a point mass at z0: E[z | x] = z0."""
    tt = expand_like(t, x)
    a, b, da, db = schedule.alpha(tt), schedule.beta(tt), schedule.d_alpha(tt), schedule.d_beta(tt)
    noise = (x - a * z0) / b
    return {"data": z0.expand_as(x), "noise": noise, "velocity": da * z0 + db * noise, "score": -noise / b}


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("source", PREDICTIONS)
@pytest.mark.parametrize("target", PREDICTIONS)
def test_conversions_agree_with_exact_fields(schedule, source, target):
    torch.manual_seed(1)
    x = torch.randn(64, 3, 4, 4, dtype=torch.float64)
    t = torch.rand(64, dtype=torch.float64) * 0.9 + 0.05
    z0 = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    truth = _point_mass_truth(schedule, x, t, z0)
    out = convert(truth[source], source, target, schedule, x, t)
    assert torch.allclose(out, truth[target], rtol=1e-9, atol=1e-9)


def test_conversion_velocity_to_noise_is_finite_at_both_ends():
    sched = LinearSchedule()
    x = torch.randn(8, 2)
    u = torch.randn(8, 2)
    for t in (0.0, 1.0):
        assert torch.isfinite(convert(u, "velocity", "noise", sched, x, t)).all()
        assert torch.isfinite(convert(u, "velocity", "data", sched, x, t)).all()
    assert not torch.isfinite(convert(u, "velocity", "score", sched, x, 1.0)).all()


def test_convert_rejects_unknown_type():
    with pytest.raises(ValueError, match="unknown prediction type 'eps'"):
        convert(torch.zeros(1, 2), "eps", "velocity", LinearSchedule(), torch.zeros(1, 2), 0.5)
