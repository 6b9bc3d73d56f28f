"""Few-step MeanFlow: rows without a JVP, the warm-up schedule, (t, r) samplers, re-noising sampling, warm starts, extra EMAs."""

import math

import pytest
import torch

from imgflow.config import ConfigError
from imgflow.core import SOLVERS, GaussianPath, LinearSchedule, make_solver, sample_time_pairs, uniform_time_grid
from imgflow.core.dynamics import FlowMap
from imgflow.core.mean_flow import mean_flow_loss
from imgflow.model_record import record_from_config
from imgflow.objectives import MeanFlowOptions, MicroBatch, build_objective
from imgflow.resolved_run import network_for
from imgflow.sampler import Sampler
from imgflow.training.model_handle import TrainingModel
from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images, tiny_config
from tests.test_mean_flow import MU, S, exact_average_velocity

PATH = GaussianPath(LinearSchedule())


class SmallFlowMap(torch.nn.Module):
    """A nonlinear u(x, t, r) (B, 2): its du/dt has every term (d_x u v and d_t u)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))

    def forward(self, x, t, r=None):
        r = t if r is None else r
        return self.net(torch.cat([x, t[:, None], (r - t)[:, None]], 1))


def _batch(n=12, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    data, noise = torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    t = torch.rand(n, generator=g) * 0.9
    r = t + torch.rand(n, generator=g) * (1 - t)
    r[:k] = t[:k]
    return data, noise, t, r


def _loss_and_grads(model, forward, data, noise, t, r, **kw):
    model.zero_grad()
    weighted, raw = mean_flow_loss(forward, PATH, data, t, r, noise=noise, per_sample=True, **kw)
    weighted.mean().backward()
    return weighted.detach(), raw, [p.grad.clone() for p in model.parameters()]


def test_rows_with_r_equal_t_skip_the_jvp_and_train_the_same_loss():
    model = SmallFlowMap()
    data, noise, t, r = _batch()
    full = _loss_and_grads(model, model, data, noise, t, r)
    split = _loss_and_grads(model, model, data, noise, t, r, num_equal=4)
    # the handle the trainer uses on a wrapped model: a no-grad JVP of the rows with r != t, one pass through the wrapper
    wrapped = TrainingModel(lambda *a, **k: model(*a, **k), model)
    handle = _loss_and_grads(model, wrapped, data, noise, t, r, num_equal=4)
    for other in (split, handle):
        assert torch.allclose(other[0], full[0], atol=1e-6) and torch.allclose(other[1], full[1], atol=1e-6)
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(other[2], full[2]))
    # and the split is not vacuous: training rows 4.. at r = t instead gives another loss
    other = _loss_and_grads(model, model, data, noise, t, t, num_equal=12)
    assert not torch.allclose(other[1][4:], full[1][4:], atol=1e-3)


def test_the_derivative_coefficient_interpolates_flow_matching_and_mean_flow():
    """u = A x + b t ignores r, so du/dt = A v + b exactly: the target is v + c (r - t)(A v + b)."""
    a, b = torch.tensor([[0.5, -0.2], [0.1, 0.3]]), torch.tensor([0.7, -0.4])

    def linear(x, t, r=None):
        return x @ a.T + t[:, None] * b

    data, noise, t, r = _batch(k=0)
    x_t, v = PATH.interpolate(data, noise, t), PATH.interpolant_velocity(data, noise, t)
    for c in (0.0, 0.5, 1.0):
        _, raw = mean_flow_loss(linear, PATH, data, t, r, noise=noise, derivative_scale=c, adaptive_p=0.0, per_sample=True)
        target = v + c * (r - t)[:, None] * (v @ a.T + b)
        assert torch.allclose(raw, ((linear(x_t, t) - target) ** 2).mean(1), atol=1e-6)


def test_adaptive_weight_is_on_the_sum_whatever_the_reduction():
    model = SmallFlowMap()
    data, noise, t, r = _batch(k=0)
    for p in (0.5, 1.0):
        mean_w, mean_raw, mean_g = _loss_and_grads(model, model, data, noise, t, r, adaptive_p=p, reduction="mean")
        sum_w, sum_raw, sum_g = _loss_and_grads(model, model, data, noise, t, r, adaptive_p=p, reduction="sum")
        assert torch.allclose(sum_raw, 2 * mean_raw)
        assert torch.allclose(sum_w, sum_raw / (sum_raw + 1e-3) ** p, atol=1e-6)  # the paper's weight on the sum
        # the mean's loss is the sum's times the constant D^(p - 1) = 2^(p - 1): the same objective
        assert torch.allclose(mean_w, sum_w * 2 ** (p - 1), atol=1e-6)
        assert all(torch.allclose(gm, gs * 2 ** (p - 1), atol=1e-6) for gm, gs in zip(mean_g, sum_g))


def _logit_normal_cdf(a, mean, std):
    return 0.5 * (1 + math.erf((math.log(a / (1 - a)) - mean) / (std * math.sqrt(2))))


def test_independent_pairs_are_the_order_statistics_of_two_logit_normals():
    n = 200_000
    t, r = sample_time_pairs(n, "independent", mean=-0.5, std=1.0, r_mean=1.5, r_std=0.8,
                             generator=torch.Generator().manual_seed(1))
    assert bool((t <= r).all())
    for a in (0.2, 0.4, 0.6, 0.8):
        f_t, f_r = _logit_normal_cdf(a, -0.5, 1.0), _logit_normal_cdf(a, 1.5, 0.8)
        p_min, p_max = 1 - (1 - f_t) * (1 - f_r), f_t * f_r  # P(min <= a), P(max <= a)
        for value, p in (((t <= a).double().mean().item(), p_min), ((r <= a).double().mean().item(), p_max)):
            assert abs(value - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_full_jumps_and_equal_rows():
    n = 100_000
    t, r = sample_time_pairs(n, "sorted", std=0.0, full_jump_fraction=0.1, equal_fraction=0.5,
                             generator=torch.Generator().manual_seed(2))
    assert bool((t[: n // 2] == r[: n // 2]).all())
    full = ((t[n // 2:] == 0) & (r[n // 2:] == 1)).double().mean().item()
    assert abs(full - 0.1) < 5 * math.sqrt(0.1 * 0.9 / (n // 2))
    with pytest.raises(ValueError, match=r"unknown time-pair sampler 'normal' \(flow.mean_flow.time_sampler\); choose one of: sorted, independent"):
        sample_time_pairs(4, "normal")


def test_the_warm_up_schedule():
    o = MeanFlowOptions(equal_fraction=0.25, flow_matching_steps=10, anneal_steps=10, anneal="both")
    assert [o.equal_share(s) for s in (0, 9)] == [1.0, 1.0] and [o.derivative_scale(s) for s in (0, 9)] == [0.0, 0.0]
    assert o.equal_share(14) == pytest.approx(1 - 0.5 * 0.75) and o.derivative_scale(14) == pytest.approx(0.5)
    assert o.equal_share(19) == pytest.approx(0.25) and o.derivative_scale(500) == 1.0
    share = MeanFlowOptions(equal_fraction=0.25, flow_matching_steps=10, anneal_steps=10, anneal="share")
    assert share.derivative_scale(10) == 1.0 and share.equal_share(10) == pytest.approx(1 - 0.1 * 0.75)
    plain = MeanFlowOptions(equal_fraction=0.25)
    assert plain.equal_share(0) == 0.25 and plain.derivative_scale(0) == 1.0


def test_the_flow_matching_phase_trains_flow_matching(tmp_path):
    cfg = tiny_config(tmp_path, **{"flow.objective": "mean_flow", "model.unet.time_scale": 50.0, "flow.mean_flow.adaptive_p": 0.0,
                                   "flow.mean_flow.flow_matching_steps": 5, "flow.mean_flow.anneal_steps": 5,
                                   "flow.mean_flow.equal_fraction": 0.0})
    objective = build_objective(cfg.flow.objective, cfg.flow.settings(), cfg.flow.options, null_label=10)
    torch.manual_seed(0)
    data, noise, y = torch.rand(6, 1, 8, 8) * 2 - 1, torch.randn(6, 1, 8, 8), torch.arange(6)
    t, r = objective.draw_times(6, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert bool((r > t).any())
    net = network_for(record_from_config(cfg, blob_images(10).spec))
    with torch.no_grad():  # away from the zero-initialised output layers, so that du/dt is not 0
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    early, _ = objective.per_sample_loss(net, MicroBatch(data, t, noise, y, r, step=4))
    x_t, v = PATH.interpolate(data, noise, t), PATH.interpolant_velocity(data, noise, t)
    assert torch.allclose(early, ((net(x_t, t, y, r=t) - v) ** 2).mean((1, 2, 3)), atol=1e-6)
    late, _ = objective.per_sample_loss(net, MicroBatch(data, t, noise, y, r, step=9))
    assert not torch.allclose(late, early, atol=1e-4)  # after the warm-up the pairs with r > t are jumps


@pytest.mark.parametrize("steps", [1, 2, 4])
def test_re_noising_with_the_exact_flow_map_samples_the_data(steps):
    """Each step jumps to the data and re-noises along the path: with the exact map every step is exact."""
    dynamics = FlowMap(exact_average_velocity, LinearSchedule())
    solver = make_solver("consistency", dynamics, generator=torch.Generator().manual_seed(0))
    x0 = torch.randn(200_000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x1 = solver.simulate(x0, uniform_time_grid(steps).double())
    assert solver.nfe == steps and SOLVERS["consistency"].evals_per_step == 1
    n = x1.shape[0]
    assert abs(x1.mean().item() - MU) < 5 * S / math.sqrt(n) and abs(x1.std().item() - S) < 5 * S / math.sqrt(2 * n)


def test_re_noising_needs_the_paths_schedule():
    with pytest.raises(TypeError, match="knows its path's schedule"):
        make_solver("consistency", FlowMap(exact_average_velocity))


def _flow_map_run(tmp_path, name, **overrides):
    cfg = tiny_config(tmp_path / name, **{"flow.objective": "mean_flow", "model.unet.time_scale": 50.0,
                                          "sample.solver": "flow_map", **overrides})
    trainer = Trainer(cfg, data=blob_images(40), progress=False)
    trainer.run()
    return trainer


def test_the_consistency_sampler_on_a_trained_flow_map(tmp_path):
    trainer = _flow_map_run(tmp_path, "mf", **{"train.steps": 4})
    sampler = Sampler.from_checkpoint(trainer.run_dir)
    one = sampler.sample(6, solver="consistency", steps=3, batch_size=6, time_grid="uniform")
    two = sampler.sample(6, solver="consistency", steps=3, batch_size=4, time_grid="uniform")
    assert one.nfe == 3 and torch.allclose(one.images, two.images, atol=1e-5)  # per-sample noise: batch size does not matter
    chained = sampler.sample(6, solver="flow_map", steps=3, time_grid="uniform")
    assert not torch.allclose(one.images, chained.images, atol=1e-3)
    fm = Sampler.from_checkpoint(_fm_run(tmp_path).run_dir)
    with pytest.raises(ConfigError, match="solver 'consistency' jumps with a flow-map model"):
        fm.sample(2, solver="consistency", steps=2)


def _fm_run(tmp_path, **overrides):
    cfg = tiny_config(tmp_path / "fm", **{"model.unet.time_scale": 50.0, "train.steps": 4, **overrides})
    trainer = Trainer(cfg, data=blob_images(40), progress=False)
    trainer.run()
    return trainer


def test_a_warm_start_makes_the_flow_map_the_velocity_model(tmp_path):
    fm = _fm_run(tmp_path)
    cfg = tiny_config(tmp_path / "mf", **{"flow.objective": "mean_flow", "model.unet.time_scale": 50.0,
                                          "train.init_from": str(fm.run_dir)})
    mf = Trainer(cfg, data=blob_images(40), progress=False)
    torch.manual_seed(0)
    x, t, r, y = torch.randn(5, 1, 8, 8), torch.rand(5), torch.rand(5), torch.arange(5)
    with torch.no_grad():
        velocity = fm.ema.module.eval()(x, t, y)
        assert torch.allclose(mf.model.eval()(x, t, y, r=r), velocity, atol=1e-5)  # u(x, t, r) = v(x, t) for every r
        assert torch.allclose(mf.ema.module.eval()(x, t, y, r=r), velocity, atol=1e-5)
    mf.lock.release()


def test_a_warm_start_refuses_another_model_before_writing_anything(tmp_path):
    fm = _fm_run(tmp_path)
    out = tmp_path / "mf"
    cfg = tiny_config(out, **{"flow.objective": "mean_flow", "model.unet.time_scale": 1000.0, "train.init_from": str(fm.run_dir)})
    with pytest.raises(ConfigError, match=r"its model differs from this run's in model.unet.time_scale 50.0 vs 1000.0"):
        Trainer(cfg, data=blob_images(40), progress=False)
    assert not out.exists()
    cfg = tiny_config(out, **{"flow.objective": "mean_flow", "train.init_from": str(tmp_path / "nowhere")})
    with pytest.raises(ConfigError, match="train.init_from"):
        Trainer(cfg, data=blob_images(40), progress=False)
    assert not out.exists()


def test_extra_emas_are_kept_side_by_side(tmp_path):
    trainer = _fm_run(tmp_path, **{"train.extra_ema_decays": [1e-6, 0.5]})
    raw = Sampler.from_checkpoint(trainer.run_dir, weights="raw").model.state_dict()
    fast = Sampler.from_checkpoint(trainer.run_dir, weights="ema@1e-06").model.state_dict()
    slow = Sampler.from_checkpoint(trainer.run_dir, weights="ema@0.5").model.state_dict()
    # decay 1e-6 follows the trained weights; 0.5 and the run's 0.9 average the last steps, differently
    assert all(torch.allclose(fast[k], raw[k], atol=1e-5) for k in raw)
    assert any(not torch.allclose(slow[k], raw[k], atol=1e-4) for k in raw)
    with pytest.raises(ConfigError, match="weights must be one of ema, raw, ema@0.5, ema@1e-06"):
        Sampler.from_checkpoint(trainer.run_dir, weights="ema@0.9")


def test_the_r_equal_t_rows_are_the_same_on_any_number_of_processes():
    from imgflow.objectives import equal_rows

    one = equal_rows(0, 64, 0.25)
    halves = equal_rows(0, 32, 0.25) + [32 + j for j in equal_rows(32, 32, 0.25)]
    quarters = [16 * q + j for q in range(4) for j in equal_rows(16 * q, 16, 0.25)]
    assert len(one) == 16 and one == halves == quarters
    assert equal_rows(0, 10, 1.0) == list(range(10)) and equal_rows(0, 10, 0.0) == []
