"""Flow maps distilled from a velocity teacher: the core losses against an exact teacher, the objectives end to end."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from imgflow.checkpoint import CheckpointError
from imgflow.config import ConfigError
from imgflow.core import LinearPath
from imgflow.core.flow_map_distillation import lagrangian_distillation_loss, lagrangian_target, teacher_mean_flow_loss
from imgflow.core.mean_flow import mean_flow_loss, normalised_target
from imgflow.data import ImageData
from imgflow.pretrained import pretrained_path
from imgflow.sampler import Sampler
from imgflow.teacher import teacher_source
from imgflow.training.metrics_log import read_metrics
from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images, tiny_config
from tests.test_mean_flow import MU, S, exact_average_velocity


def exact_velocity(x, t, **_):
    """The marginal velocity of data N(MU, S^2) on the linear path: a perfect teacher."""
    return exact_average_velocity(x, t, t)


def _gaussian_batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    data = MU + S * torch.randn(n, 3, generator=g, dtype=torch.float64)
    noise = torch.randn(n, 3, generator=g, dtype=torch.float64)
    t = torch.rand(n, generator=g, dtype=torch.float64) * 0.9
    r = t + torch.rand(n, generator=g, dtype=torch.float64) * (1 - t)
    return data, noise, t, r


def test_the_teacher_target_is_exact_where_the_conditional_one_is_not():
    """With the teacher's velocity as tangent and target, the exact flow map is a fixed point of the loss: every row's error
    vanishes, jump rows included. The same map under MeanFlow from scratch (tangent data - noise) has a large error."""
    data, noise, t, r = _gaussian_batch()
    path = LinearPath()
    exact = lambda x, tt, r: exact_average_velocity(x, tt, r)
    _, error = teacher_mean_flow_loss(exact, exact_velocity, path, data, t, r, noise=noise, num_equal=16, adaptive_p=0.0,
                                      per_sample=True)
    assert error.max().item() < 1e-18
    _, scratch = mean_flow_loss(exact, path, data, t, r, noise=noise, num_equal=16, adaptive_p=0.0, per_sample=True)
    assert scratch.mean().item() > 0.1
    # a student that is only the velocity (u = v for every r) is not the map: the teacher's target says so
    velocity_only = lambda x, tt, r: exact_velocity(x, tt)
    _, wrong = teacher_mean_flow_loss(velocity_only, exact_velocity, path, data, t, r, noise=noise, num_equal=16, adaptive_p=0.0,
                                      per_sample=True)
    assert wrong[:16].max().item() < 1e-18 and wrong[16:].mean().item() > 1e-3


def test_the_r_equal_t_rows_take_the_chosen_target_and_skip_the_jvp():
    data, noise, t, r = _gaussian_batch(12)
    path = LinearPath()
    seen = []

    class Counting(torch.nn.Module):
        def forward(self, x, tt, r=None):
            return exact_average_velocity(x, tt, tt if r is None else r)

        def average_velocity_and_derivative(self, x, tt, r, velocity):
            seen.append(x.shape[0])
            return torch.func.jvp(lambda a, b: self(a, b, r=r), (x, tt), (velocity, torch.ones_like(tt)))

    _, error = teacher_mean_flow_loss(Counting(), exact_velocity, path, data, t, r, noise=noise, num_equal=5, equal_target="data",
                                      adaptive_p=0.0, per_sample=True)
    assert seen == [7]  # only the 7 jump rows went through forward-mode AD
    x_t = path.interpolate(data, noise, t)
    conditional = path.interpolant_velocity(data, noise, t)
    expected = ((exact_velocity(x_t[:5], t[:5]) - conditional[:5]) ** 2).mean(1)  # flow matching's error on those rows
    assert torch.allclose(error[:5], expected, rtol=1e-12) and error[5:].max() < 1e-18


def test_the_lagrangian_target_is_the_exact_map_up_to_the_teachers_euler_step():
    """(1 - d) u(x_t, t, r') + d v_T(x_r', r') differs from the exact u(x_t, t, r) by exactly the Euler step's error from r'
    to r, divided by (r - t): d (u(x_r', r', r) - v(x_r', r')), which shrinks like d^2."""
    data, noise, t, r = _gaussian_batch()
    x_t = LinearPath().interpolate(data, noise, t)
    exact = lambda x, tt, r: exact_average_velocity(x, tt, r)
    residuals = {}
    for d in (0.1, 0.05):
        target = lagrangian_target(exact, exact_velocity, x_t, t, r, d)
        r_mid = r - d * (r - t)
        x_mid = x_t + (r_mid - t)[:, None] * exact(x_t, t, r_mid)
        euler_error = d * (exact(x_mid, r_mid, r) - exact_velocity(x_mid, r_mid))
        assert torch.allclose(target, exact(x_t, t, r) - euler_error, atol=1e-12)
        residuals[d] = (target - exact(x_t, t, r)).abs().mean().item()
    assert 3.6 < residuals[0.1] / residuals[0.05] < 4.4  # second order in d
    assert torch.equal(lagrangian_target(exact, exact_velocity, x_t, t, r, 1.0), exact_velocity(x_t, t))
    with pytest.raises(ValueError, match="step_fraction must be in"):
        lagrangian_target(exact, exact_velocity, x_t, t, r, 0.0)


def test_the_lagrangian_loss_uses_no_jvp_and_the_frozen_student():
    data, noise, t, r = _gaussian_batch(10)
    calls = []

    def frozen(x, tt, r=None):
        calls.append(torch.is_grad_enabled())
        return exact_average_velocity(x, tt, r)

    _, error = lagrangian_distillation_loss(lambda x, tt, r: exact_average_velocity(x, tt, r), exact_velocity, LinearPath(), data,
                                            t, r, step_fraction=0.01, frozen=frozen, noise=noise, num_equal=4, adaptive_p=0.0,
                                            per_sample=True)
    assert calls == [False]  # one pass of the frozen student, without gradient
    assert error[:4].max() < 1e-18 and 0 < error[4:].max() < 1e-6  # O(d^2) from the exact map


def test_the_normalised_target_keeps_the_fixed_point_and_the_direction():
    torch.manual_seed(0)
    u, target = torch.randn(6, 4, 3), torch.randn(6, 4, 3)
    g = u - target
    step = u - normalised_target(u, target, 0.1)
    rms = g.flatten(1).pow(2).mean(1).sqrt()
    assert torch.allclose(step, g / (rms + 0.1)[:, None, None], atol=1e-6)
    assert (step.flatten(1).pow(2).mean(1).sqrt() < 1).all()
    assert torch.equal(normalised_target(target, target, 0.1), target)  # g = 0: the target is the prediction


def _teacher(tmp_path, **overrides):
    cfg = tiny_config(tmp_path / "teacher", **{"model.unet.time_scale": 50.0, "train.steps": 4, **overrides})
    trainer = Trainer(cfg, data=blob_images(40), progress=False)
    trainer.run()
    return trainer


def _student_config(tmp_path, teacher, objective="mean_flow_distillation", name="student", **overrides):
    return tiny_config(tmp_path / name, **{"flow.objective": objective, "model.unet.time_scale": 50.0,
                                           f"flow.{objective}.teacher": str(teacher), "sample.solver": "flow_map",
                                           "sample.num_steps": 1, **overrides})


@pytest.mark.parametrize("objective", ["mean_flow_distillation", "lagrangian_distillation"])
def test_a_student_starts_as_its_teacher_and_trains(tmp_path, objective):
    teacher = _teacher(tmp_path)
    cfg = _student_config(tmp_path, teacher.run_dir, objective, **{f"flow.{objective}.teacher_guidance": 2.0})
    student = Trainer(cfg, data=blob_images(40), progress=False)
    torch.manual_seed(0)
    x, t, r, y = torch.randn(5, 1, 8, 8), torch.rand(5), torch.rand(5), torch.arange(5)
    velocity = teacher.ema.module.eval()
    with torch.no_grad():
        assert torch.allclose(student.model.eval()(x, t, y, r=r), velocity(x, t, y), atol=1e-5)  # u(x, t, r) = v_T(x, t)
        null = torch.full_like(y, 10)
        guided = velocity(x, t, null) + 2.0 * (velocity(x, t, y) - velocity(x, t, null))
        assert torch.allclose(student.objective.teacher_velocity(x, t, y), guided, atol=1e-5)
    student.model.train()
    assert student.run().step == 8
    losses = torch.tensor([row["loss"] for row in read_metrics(student.run_dir)])
    assert len(losses) == 4 and torch.isfinite(losses).all()
    sampler = Sampler.from_checkpoint(student.run_dir, weights="raw")
    with torch.no_grad():  # trained: the jumps now depend on r, which the teacher's velocity does not
        assert (sampler.model(x, t, y, r=r) - sampler.model(x, t, y, r=t)).abs().max() > 1e-4
    sampler = Sampler.from_checkpoint(student.run_dir)
    assert sampler.record.flow_map and sampler.record.trained_guidance == 2.0
    samples = sampler.sample(4, seed=0)
    assert samples.nfe == 1 and samples.images.shape == (4, 1, 8, 8)


def test_a_student_of_another_shape_trains_without_the_teachers_weights(tmp_path):
    teacher = _teacher(tmp_path)
    cfg = _student_config(tmp_path, teacher.run_dir, **{"model.unet.base_channels": 4,
                                                        "flow.mean_flow_distillation.init_from_teacher": False})
    student = Trainer(cfg, data=blob_images(40), progress=False)
    assert sum(p.numel() for p in student.model.parameters()) < sum(p.numel() for p in teacher.model.parameters())
    assert student.run().step == 8


def test_a_shipped_name_names_its_file():
    assert teacher_source("mnist") == pretrained_path("mnist")


def test_bad_teachers_are_refused_before_anything_is_written(tmp_path):
    teacher = _teacher(tmp_path)
    out = tmp_path / "student"

    def refused(match, data=None, **overrides):
        cfg_overrides = {"flow.mean_flow_distillation.teacher": str(teacher.run_dir), **overrides}
        with pytest.raises(ConfigError, match=match):
            cfg = _student_config(tmp_path, cfg_overrides.pop("flow.mean_flow_distillation.teacher"), **cfg_overrides)
            Trainer(cfg, data=data or blob_images(40), progress=False)
        assert not out.exists()

    refused("teacher is not set", **{"flow.mean_flow_distillation.teacher": ""})
    refused("= '.*' does not exist: name a run folder, a checkpoint file, a model folder, a shipped model",
            **{"flow.mean_flow_distillation.teacher": str(tmp_path / "no")})
    refused(r"its model differs from this run's in model.unet.time_scale 50.0 vs 1000.0.*init_from_teacher = false",
            **{"model.unet.time_scale": 1000.0})
    refused("train.init_from and flow.mean_flow_distillation.init_from_teacher = true both choose",
            **{"train.init_from": str(teacher.run_dir)})
    refused(r"cannot teach this run: it models data of shape \(1, 8, 8\) with 10 classes, this run \(1, 16, 16\)",
            data=blob_images(40, size=16), **{"data.image_size": 16, "model.unet.attention_resolutions": [8]})
    blobs = blob_images(40)
    renamed = ImageData(blobs.images, blobs.labels, dataclasses.replace(blobs.spec, class_names=tuple("abcdefghij")))
    refused("its classes are 0, 1, 2, ... and this run's a, b, c, ...: another data set", data=renamed)
    flow_map = Trainer(tiny_config(tmp_path / "mf", **{"flow.objective": "mean_flow", "train.steps": 2}), data=blob_images(40),
                       progress=False)
    flow_map.run()
    refused("cannot teach this run: it is a flow map", **{"flow.mean_flow_distillation.teacher": str(flow_map.run_dir)})
    unconditional = _teacher(tmp_path / "u", **{"model.class_conditional": False, "flow.label_dropout": 0.0})
    refused("it is unconditional and this run is class-conditional",
            **{"flow.mean_flow_distillation.teacher": str(unconditional.run_dir)})
    refused(r"teacher_guidance must be >= 0", **{"flow.mean_flow_distillation.teacher_guidance": -1.0})
    refused(r"equal_target = 'both' is not one of: teacher, data", **{"flow.mean_flow_distillation.equal_target": "both"})


def test_endpoint_pairs_are_the_teachers_ode_solutions_and_are_cached(tmp_path):
    from imgflow.teacher import PAIRS_CACHE, endpoint_pairs, load_teacher

    teacher_run = _teacher(tmp_path)
    cfg = _student_config(tmp_path, teacher_run.run_dir)
    student = Trainer(cfg, data=blob_images(40), progress=False)
    student.lock.release()
    teacher = load_teacher(str(teacher_run.run_dir), student.record)
    pairs, seconds = endpoint_pairs(teacher, student.record, 12, "heun", 3, guidance=1.5, seed=7, cache_dir=tmp_path / "cache")
    assert seconds > 0 and pairs.noise.shape == pairs.ends.shape == (12, 1, 8, 8) and pairs.labels.tolist() == [i % 10 for i in range(12)]
    sampler = Sampler.from_checkpoint(teacher_run.run_dir)
    expected = sampler.sample(12, labels=pairs.labels, solver="heun", steps=3, guidance=1.5, noise=pairs.noise, clip=False)
    assert torch.allclose(pairs.ends, expected.images, atol=1e-5)  # the sampler's ODE solution from the same noise
    again, seconds = endpoint_pairs(teacher, student.record, 12, "heun", 3, guidance=1.5, seed=7, cache_dir=tmp_path / "cache")
    assert seconds == 0.0 and torch.equal(again.ends, pairs.ends)  # reused
    other, _ = endpoint_pairs(teacher, student.record, 12, "heun", 4, guidance=1.5, seed=7, cache_dir=tmp_path / "cache")
    assert not torch.allclose(other.ends, pairs.ends, atol=1e-4)  # another solver setting is another cache
    ends = pairs.ends.clone()
    del pairs, again, other  # their memory maps: a file truncated under a live map faults on the next read
    for folder in (tmp_path / "cache").glob("[!.]*"):  # a truncated cache is rebuilt, never trusted (lock files aside)
        with open(folder / PAIRS_CACHE.data_file, "r+b") as fh:
            fh.truncate(100)
    rebuilt, seconds = endpoint_pairs(teacher, student.record, 12, "heun", 3, guidance=1.5, seed=7, cache_dir=tmp_path / "cache")
    assert seconds > 0 and torch.equal(rebuilt.ends, ends)


def test_pair_rows_regress_onto_the_pairs_and_their_build_counts_in_the_budget(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGFLOW_CACHE", str(tmp_path / "cache"))
    teacher = _teacher(tmp_path)
    cfg = _student_config(tmp_path, teacher.run_dir, **{"flow.mean_flow_distillation.endpoint_pairs": 16,
                                                        "flow.mean_flow_distillation.endpoint_steps": 2,
                                                        "flow.mean_flow_distillation.full_jump_fraction": 0.25})
    student = Trainer(cfg, data=blob_images(40), progress=False)
    assert student.budget_spent > 0
    pairs = student.objective.teacher.pairs
    batch = student.micro_batch(student.global_batch(0), 0)
    from imgflow.objectives.mean_flow import ordered_rows

    ordered = ordered_rows(batch, 0.25, 0.25)
    assert ordered.num_pairs == 2 and ordered.num_equal == 2  # 8 rows: a quarter each
    with torch.no_grad():
        _, error = student.objective.pair_loss(student.model, ordered, 0)
        index = [(g * 7_919) % 16 for g in ordered.pair_rows]
        u = student.model(pairs.noise[index], torch.zeros(2), y=pairs.labels[index], r=torch.ones(2))
        assert torch.allclose(error, ((u - (pairs.ends[index] - pairs.noise[index])) ** 2).mean((1, 2, 3)), rtol=1e-5)
    assert student.run().step == 8
    with pytest.raises(ConfigError, match="endpoint_pairs > 0 trains the full-jump rows on them, but full_jump_fraction is 0"):
        _student_config(tmp_path, teacher.run_dir, name="s2", **{"flow.mean_flow_distillation.endpoint_pairs": 16,
                                                                 "flow.mean_flow_distillation.full_jump_fraction": 0.0})


def test_the_finite_difference_tangent_converges_to_the_jvp_at_first_order():
    data, noise, t, r = _gaussian_batch()
    path = LinearPath()
    exact = lambda x, tt, r: exact_average_velocity(x, tt, r)
    errors = {}
    for eps in (2e-3, 1e-3):
        _, error = teacher_mean_flow_loss(exact, exact_velocity, path, data, t, r, noise=noise, num_equal=8, adaptive_p=0.0,
                                          tangent_step=eps, per_sample=True)
        errors[eps] = error[8:].mean().sqrt().item()
        assert error[:8].max() < 1e-18
    assert 0 < errors[1e-3] < 1e-2 and 1.8 < errors[2e-3] / errors[1e-3] < 2.2  # the exact map, up to O(eps)


def test_a_resume_refuses_a_teacher_name_that_now_means_other_weights(tmp_path):
    teacher = _teacher(tmp_path)
    cfg = _student_config(tmp_path, teacher.run_dir, **{"train.steps": 4})
    Trainer(cfg, data=blob_images(40), progress=False).run()
    longer = tiny_config(tmp_path / "teacher", **{"model.unet.time_scale": 50.0, "train.steps": 8})
    Trainer(longer, data=blob_images(40), resume="latest", progress=False).run()  # the run folder's latest is now step 8
    cfg = _student_config(tmp_path, teacher.run_dir, **{"train.steps": 8})
    with pytest.raises(ConfigError, match="now names other weights"):
        Trainer(cfg, data=blob_images(40), resume="latest", progress=False)
    cfg = _student_config(tmp_path, teacher.run_dir / "ckpt-00000004.safetensors", **{"train.steps": 8})
    with pytest.raises(CheckpointError, match="it was trained with flow.mean_flow_distillation.teacher"):  # another config
        Trainer(cfg, data=blob_images(40), resume="latest", progress=False)
