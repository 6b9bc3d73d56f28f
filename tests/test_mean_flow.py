"""MeanFlow: the identity against an exact flow map, the loss, flow-map U-Nets, training, one-step sampling."""

import math

import pytest
import torch

from imgflow.config import ConfigError, load_config
from imgflow.core import GaussianPath, LinearSchedule, flow_matching_loss
from imgflow.core.mean_flow import (
    Guidance,
    average_velocity_and_derivative,
    guided_velocity,
    mean_flow_loss,
    trained_guidance,
)
from imgflow.core.time_sampling import sample_time_pairs
from imgflow.nn import UNet
from imgflow.sampler import Sampler
from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images, tiny_config

MU, S = 1.5, 0.4  # data N(MU, S^2) per coordinate


def sigma(t):
    """Standard deviation of x_t = (1 - t) noise + t data for data N(MU, S^2), noise N(0, 1)."""
    return torch.sqrt((1 - t) ** 2 + (t * S) ** 2)


def exact_average_velocity(x, t, r):
    """The exact flow map of Gaussian data on the linear path is affine: x_r = m_r + (sigma_r / sigma_t)(x - m_t), m_t = t MU.

    u(x, t, r) = (x_r - x) / (r - t); at r = t, its limit, the marginal velocity.
    """
    t, r = t[:, None], r[:, None]
    dt = r - t
    ratio = sigma(r) / sigma(t)
    moved = r * MU + ratio * (x - t * MU) - x
    velocity = MU + (x - t * MU) * (-(1 - t) + t * S**2) / sigma(t) ** 2  # d/dt of the map at r = t
    return torch.where(dt.abs() > 1e-12, moved / torch.where(dt.abs() > 1e-12, dt, torch.ones_like(dt)), velocity)


def test_the_identity_holds_for_the_exact_flow_map():
    """u = v + (r - t) du/dt with du/dt the JVP along (v, 1, 0): the target built from the exact map is the exact map."""
    torch.manual_seed(0)
    x = torch.randn(64, 3, dtype=torch.float64) * 2
    t = torch.rand(64, dtype=torch.float64) * 0.8
    r = t + torch.rand(64, dtype=torch.float64) * (1 - t)
    v = exact_average_velocity(x, t, t)
    _, du_dt = average_velocity_and_derivative(lambda a, tt, r: exact_average_velocity(a, tt, r), x, t, r, v)
    target = v + (r - t)[:, None] * du_dt
    assert torch.allclose(target, exact_average_velocity(x, t, r), atol=1e-9)
    # the other sign, or the JVP along the wrong time direction, is far off: the check can fail
    wrong = v - (r - t)[:, None] * (target - v) / (r - t)[:, None]
    assert (wrong - exact_average_velocity(x, t, r)).abs().max() > 1e-2
    # one step of the exact map from t = 0 lands on the data distribution: mean MU, std S
    x0 = torch.randn(200_000, 1, dtype=torch.float64)
    x1 = x0 + exact_average_velocity(x0, torch.zeros(200_000, dtype=torch.float64), torch.ones(200_000, dtype=torch.float64))
    assert abs(x1.mean().item() - MU) < 5 * S / math.sqrt(200_000) and abs(x1.std().item() - S) < 5 * S / math.sqrt(2 * 200_000)


def test_at_r_equal_t_the_loss_is_flow_matching():
    torch.manual_seed(0)
    path = GaussianPath(LinearSchedule())
    data, noise, t = torch.randn(16, 2), torch.randn(16, 2), torch.rand(16)
    net = torch.nn.Linear(3, 2)

    def flow_map(x, tt, r=None):
        return net(torch.cat([x, tt[:, None]], 1))  # ignores r

    mf = mean_flow_loss(flow_map, path, data, t, t, noise=noise, adaptive_p=0.0)
    fm = flow_matching_loss(lambda x, tt: flow_map(x, tt), path, data, t, noise=noise)
    assert torch.allclose(mf, fm)
    weighted, raw = mean_flow_loss(flow_map, path, data, t, t, noise=noise, adaptive_p=1.0, per_sample=True)
    squares_sum = 2 * raw  # the mean over D = 2 dimensions; the paper's weight 1 / (S + 1e-3) is on the sum S
    assert torch.allclose(weighted, squares_sum / (squares_sum + 1e-3)) and torch.allclose(raw.mean(), fm)
    summed, _ = mean_flow_loss(flow_map, path, data, t, t, noise=noise, adaptive_p=1.0, reduction="sum", per_sample=True)
    assert torch.allclose(summed, weighted)  # p = 1: one objective whatever the reduction reports


def test_time_pairs_are_ordered_and_the_first_rows_are_equal():
    n = 100_000
    t, r = sample_time_pairs(n, "sorted", mean=0.4, std=1.0, equal_fraction=0.75, generator=torch.Generator().manual_seed(0))
    assert bool((t <= r).all()) and bool(((t >= 0) & (r <= 1)).all())
    assert bool((t[:75_000] == r[:75_000]).all()) and bool((t[75_000:] < r[75_000:]).all())  # continuous draws never tie


def test_guidance_folds_the_models_velocity_into_the_target():
    x, t = torch.zeros(4, 2), torch.rand(4)
    v_cond = torch.ones(4, 2)
    labels = torch.tensor([0, 1, 3, 3])  # 3 is the null label: those samples keep v_c

    def velocity_model(x, tt, y):
        return torch.where((y == 3)[:, None], torch.full_like(x, 10.0), torch.full_like(x, 20.0))

    g = guided_velocity(velocity_model, x, t, v_cond, labels, Guidance(omega=2.0, kappa=0.5, null_label=3))
    expected = 2.0 * 1 + 0.5 * 20 + (1 - 2.0 - 0.5) * 10  # omega v_c + kappa u(c) + (1 - omega - kappa) u(null) = -3
    assert torch.allclose(g[:2], torch.full((2, 2), expected)) and torch.allclose(g[2:], v_cond[2:])
    assert trained_guidance(2.0, 0.5) == 4.0


def test_a_flow_map_unet_takes_a_second_time_and_starts_as_a_velocity_model():
    torch.manual_seed(0)
    kw = dict(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
              num_classes=3, dropout=0.0)
    net = UNet(**kw, second_time="interval")
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 1])
    for p in net.parameters():  # leave the zero output layers behind so the output depends on everything
        torch.nn.init.normal_(p, std=0.1)
    assert torch.equal(net(x, t, y), net(x, t, y, r=t))
    assert not torch.allclose(net(x, t, y), net(x, t, y, r=torch.ones(2)))
    plain = UNet(**kw)
    with pytest.raises(ValueError, match="takes one time"):
        plain(x, t, y, r=t)
    # forward-mode AD has no rule for the fused attention kernel; the target's JVP uses the math kernel
    with pytest.raises(NotImplementedError, match="forward AD"):
        torch.func.jvp(lambda a: net(a, t, y, r=t), (x,), (torch.ones_like(x),))
    u, du_dt = average_velocity_and_derivative(lambda a, tt, r: net(a, tt, y, r=r), x, t, torch.ones(2), torch.ones_like(x))
    assert u.shape == du_dt.shape == x.shape and torch.isfinite(du_dt).all() and torch.allclose(u, net(x, t, y, r=torch.ones(2)))


def mean_flow_config(tmp_path, **overrides):
    return tiny_config(tmp_path, **{"flow.objective": "mean_flow", "model.unet.second_time": "interval", "flow.mean_flow.guidance": 1.5,
                                    "sample.solver": "flow_map", "sample.num_steps": 1, **overrides})


def test_mean_flow_trains_and_samples_in_one_step(tmp_path):
    data = blob_images(64)
    cfg = mean_flow_config(tmp_path / "run", **{"train.steps": 40, "train.checkpoint_every": 40, "model.unet.time_scale": 50.0})
    trainer = Trainer(cfg, data=data)
    trainer.run(progress=False)
    from imgflow.training.metrics_log import read_metrics

    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    # the squared error to the (moving) target falls: the last 4 log windows average 0.51x the first 4 (fixed seeds,
    # the shipped time scale 50; with DDPM's 1000 the du/dt term makes single windows jump 2-3x); a broken loss does not
    assert all(math.isfinite(v) for v in losses) and sum(losses[-4:]) < 0.7 * sum(losses[:4])
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    assert sampler.flow_map and sampler.trained_guidance == 1.5
    one = sampler.sample(10, steps=1)
    assert one.nfe == 1 and one.settings.solver == "flow_map" and one.settings.guidance == 1.0 and torch.isfinite(one.images).all()
    four = sampler.sample(10, steps=4)
    ode = sampler.sample(10, solver="euler", steps=4)  # r = t: the same network as a velocity field
    assert four.nfe == 4 and ode.nfe == 4 and not torch.equal(four.images, ode.images)


def test_mean_flow_config_errors():
    with pytest.raises(ConfigError, match="model.arch = 'lab_unet' cannot take .no second time.; use one of: unet"):
        load_config(None, {"flow.objective": "mean_flow", "model.arch": "lab_unet"})
    with pytest.raises(ConfigError, match="sample.solver = 'flow_map' needs a flow-map model"):
        load_config(None, {"sample.solver": "flow_map"})
    mean_flow = {"flow.objective": "mean_flow", "model.unet.second_time": "interval"}
    for key, value, message in (("flow.mean_flow.guidance_mix", 1.0, r"must be in \[0, 1\), got 1.0"),
                                ("flow.mean_flow.guidance_mix", -0.5, r"must be in \[0, 1\), got -0.5"),
                                ("flow.mean_flow.guidance", 0.0, "must be > 0 .1 = no guidance., got 0.0"),
                                ("flow.mean_flow.time_std", -1.0, "must be >= 0 .0 = uniform times."),
                                ("flow.mean_flow.equal_fraction", 1.5, r"must be in \[0, 1\], got 1.5"),
                                ("flow.mean_flow.full_jump_fraction", -0.1, r"full_jump_fraction must be in \[0, 1\], got -0.1"),
                                ("flow.mean_flow.time_sampler", "normal", "time_sampler = 'normal' is not one of: sorted, independent"),
                                ("flow.mean_flow.anneal", "alpha", "anneal = 'alpha' is not one of: share, derivative, both"),
                                ("flow.mean_flow.anneal_steps", -5, "flow_matching_steps and anneal_steps must be >= 0"),
                                ("train.extra_ema_decays", [0.999], "distinct decays in .0, 1., other than train.ema_decay"),
                                ("train.extra_ema_decays", [1.5], "distinct decays in .0, 1."),
                                ("flow.prediction", "noise", "set flow.prediction = 'velocity'")):
        with pytest.raises(ConfigError, match=message):
            load_config(None, {**mean_flow, key: value})


def test_mean_flow_runs_under_bf16_autocast(tmp_path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)
    try:
        acc = Accelerator(cpu=True, mixed_precision="bf16")
        trainer = Trainer(mean_flow_config(tmp_path / "run", **{"train.steps": 4}), data=blob_images(32), accelerator=acc)
        trainer.run(progress=False)
        from imgflow.training.metrics_log import read_metrics

        assert all(math.isfinite(m["loss"]) for m in read_metrics(tmp_path / "run"))
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


def test_a_checkpoint_from_before_the_second_time_loads_and_samples_as_before(tmp_path):
    """A one-time checkpoint whose stored config has none of the keys MeanFlow added still loads, as a velocity model."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    cfg = tiny_config(tmp_path / "run", **{"train.steps": 4, "train.checkpoint_every": 4})
    Trainer(cfg, data=blob_images(32)).run(progress=False)
    path = tmp_path / "run" / "ckpt-00000004.safetensors"
    before = Sampler.from_checkpoint(path, device="cpu").sample(4, steps=2)

    with safe_open(str(path), "pt") as fh:
        metadata = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 (safe_open is not a dict)
    stored = json.loads(metadata["config"])
    for section, key in (("model", "second_time"), ("model", "time_scale")):
        stored[section]["unet"].pop(key, None)
    del stored["flow"]["objective"]
    old = tmp_path / "old" / "ckpt-00000004.safetensors"
    old.parent.mkdir()
    metadata = {k: v for k, v in metadata.items() if k != "model_record"}  # described by its config alone
    save_file(tensors, str(old), metadata={**metadata, "config": json.dumps(stored)})

    sampler = Sampler.from_checkpoint(old, device="cpu")
    assert not sampler.flow_map and sampler.trained_guidance is None
    assert torch.equal(sampler.sample(4, steps=2).images, before.images)


def test_an_unlabelled_flow_map_refuses_guidance_and_trains_without_it(tmp_path):
    """A guided recipe on unlabelled data (a flat folder) is refused before anything is written (the guidance would do
    nothing); at guidance 1 it trains unconditionally."""
    from imgflow.data import ImageData

    data = ImageData(blob_images(32).images, None)
    with pytest.raises(ConfigError, match=r"flow.mean_flow.guidance guides with class labels, but the data has no classes"):
        Trainer(mean_flow_config(tmp_path / "guided"), data=data)
    assert not (tmp_path / "guided").exists()
    cfg = mean_flow_config(tmp_path / "run", **{"train.steps": 2, "train.checkpoint_every": 2, "flow.mean_flow.guidance": 1.0})
    trainer = Trainer(cfg, data=data)
    assert trainer.objective.guidance is None
    trainer.run(progress=False)
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    assert not sampler.conditional and sampler.trained_guidance == 1.0
    assert sampler.sample(4, steps=1).labels is None
