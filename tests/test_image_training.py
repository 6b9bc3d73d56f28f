"""Training, checkpoints, resume and sampling of the image pipeline on tiny in-memory data."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from imgflow.checkpoint import CheckpointError, list_checkpoints, load_checkpoint, load_weights_into
from imgflow.config import ConfigError, load_config
from imgflow.core import flow_matching_loss
from imgflow.resolved_run import build_model
from imgflow.sampler import Sampler
from imgflow.training.metrics_log import read_metrics
from imgflow.training.trainer import NonFiniteLossError, Trainer, train
from tests.image_helpers import blob_images, tiny_config

REPO = Path(__file__).resolve().parents[1]


def eval_loss(model, cfg, data, seed=123):
    """Flow-matching loss of `model` on a fixed batch, times and noise (no dropout of labels)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.arange(64) % len(data)
    images, y = data.batch(idx)
    t = torch.rand(64, generator=g)
    noise = torch.randn(images.shape, generator=g)
    with torch.no_grad():
        return flow_matching_loss(model, cfg.flow.settings().path(), images, t, noise=noise, model_kwargs={"y": y}).item()


def all_state(trainer):
    out = {f"model.{k}": v.clone() for k, v in trainer.model.state_dict().items()}
    out.update({f"ema.{k}": v.clone() for k, v in trainer.ema.module.state_dict().items()})
    for idx, st in trainer.optimizer.state_dict()["state"].items():
        out.update({f"opt.{idx}.{k}": v.clone() for k, v in st.items()})
    return out


def test_training_lowers_the_loss_and_writes_outputs(tmp_path):
    data = blob_images(200)
    cfg = tiny_config(tmp_path / "run", **{"train.steps": 60, "train.sample_every": 60, "train.checkpoint_every": 20, "train.keep_last": 2})
    trainer = Trainer(cfg, data=data)
    before = eval_loss(trainer.model, cfg, data)
    result = trainer.run(progress=False)
    after = eval_loss(trainer.model, cfg, data)
    # the zero-initialised model predicts u = 0, so `before` is E|z - x0|^2 / D (about 1.3 here);
    # 60 steps on a 10-pattern data set reliably remove more than a third of it
    assert after < 0.67 * before, (before, after)
    assert result.step == 60 and result.stopped_by == "steps"
    # keep-last-2 and the latest pointer
    cfg_dir = Path(cfg.run.output_dir)
    names = [p.name for p in list_checkpoints(cfg_dir)]
    assert names == ["ckpt-00000040.safetensors", "ckpt-00000060.safetensors"]
    assert (cfg_dir / "latest").read_text() == "ckpt-00000060.safetensors"
    grid = Image.open(cfg_dir / "samples" / "step-00000060.png")
    assert grid.size == (10 * (8 + 2) + 2, 1 * (8 + 2) + 2)  # 10 images, nrow 10, padding 2
    metrics = read_metrics(cfg_dir)
    assert [m["step"] for m in metrics] == list(range(2, 61, 2))
    assert all(m["loss"] > 0 and m["images_per_s"] > 0 for m in metrics)
    # the loss by time bin: 10 bins, each the mean of the per-sample losses whose t fell in it; the
    # samples' overall mean lies between the smallest and largest bin means
    by_t = [m["loss_by_t"] for m in metrics]
    assert all(len(b) == 10 for b in by_t)
    assert all(min(v for v in b if v is not None) <= m["loss"] <= max(v for v in b if v is not None) for b, m in zip(by_t, metrics))
    assert not list(cfg_dir.glob(".*.tmp"))


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    data = blob_images(64)
    cfg = tiny_config(tmp_path / "run", **{"train.steps": 4})
    trainer = Trainer(cfg, data=data)
    trainer.run(progress=False)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.step == 4 and ckpt.config.to_dict() == cfg.to_dict()
    assert ckpt.spec == data.spec and ckpt.spec.num_classes == 10 and ckpt.spec.shape == (1, 8, 8)
    for which, source in (("raw", trainer.model), ("ema", trainer.ema.module)):
        rebuilt = build_model(ckpt.config, ckpt.spec)
        load_weights_into(rebuilt, ckpt.weights(which), ckpt.path)
        x, t, y = torch.randn(5, 1, 8, 8), torch.rand(5), torch.tensor([0, 1, 2, 3, 10])
        source.eval(), rebuilt.eval()
        with torch.no_grad():
            assert torch.equal(rebuilt(x, t, y), source(x, t, y))
    assert not torch.equal(ckpt.weights("raw")["out.2.weight"], ckpt.weights("ema")["out.2.weight"])


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_equals_an_uninterrupted_run(tmp_path, grad_accum):
    data = blob_images(64)
    extra = {"train.steps": 10, "train.checkpoint_every": 4, "train.grad_accum": grad_accum, "model.unet.dropout": 0.1}
    full = Trainer(tiny_config(tmp_path / "full", **extra), data=data)
    full.run(progress=False)
    first = Trainer(tiny_config(tmp_path / "part", **{**extra, "train.steps": 6}), data=data)
    first.run(progress=False)  # checkpoints at 4 and 6
    resumed = Trainer(tiny_config(tmp_path / "part", **extra), resume="latest", data=data)
    assert resumed.step == 6
    resumed.run(progress=False)
    a, b = all_state(full), all_state(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), [k for k in a if not torch.equal(a[k], b[k])][:3]
    assert resumed.scheduler.state_dict()["last_epoch"] == full.scheduler.state_dict()["last_epoch"] == 10
    losses_full = [m["loss"] for m in read_metrics(tmp_path / "full")]
    losses_resumed = [m["loss"] for m in read_metrics(tmp_path / "part")]
    assert losses_full == losses_resumed


def test_resume_auto_starts_fresh_in_an_empty_folder_continues_a_run_and_still_refuses_another_config(tmp_path):
    data = blob_images(64)
    fresh = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 4}), resume="auto", data=data)
    assert fresh.step == 0
    fresh.run(progress=False)
    again = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 6}), resume="auto", data=data)  # the same command, rerun
    assert again.step == 4
    again.lock.release()  # built, not run: it holds the folder like a live run
    with pytest.raises(CheckpointError, match="model.unet.base_channels = 8, this run has 16"):
        Trainer(tiny_config(tmp_path / "run", **{"model.unet.base_channels": 16, "train.steps": 8}), resume="auto", data=data)


def test_resume_refuses_another_architecture_and_fresh_run_refuses_old_dir(tmp_path):
    data = blob_images(64)
    train(tiny_config(tmp_path / "run", **{"train.steps": 4}), data=data, progress=False)
    with pytest.raises(CheckpointError, match="model.unet.base_channels = 8, this run has 16"):
        Trainer(tiny_config(tmp_path / "run", **{"model.unet.base_channels": 16, "train.steps": 8}), resume="latest", data=data)
    with pytest.raises(ConfigError, match="already holds checkpoints; pass --resume latest"):
        Trainer(tiny_config(tmp_path / "run"), data=data)
    with pytest.raises(CheckpointError, match="no checkpoint to resume"):
        Trainer(tiny_config(tmp_path / "empty"), resume="latest", data=data)


def test_unwritable_output_dir_is_one_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="cannot be created: .* is a file"):
        Trainer(tiny_config(blocker / "run"), data=blob_images(16))


def test_nonfinite_loss_stops_and_keeps_the_last_checkpoint(tmp_path):
    data = blob_images(64)
    cfg = tiny_config(tmp_path / "run", **{"train.steps": 4})
    train(cfg, data=data, progress=False)
    ckpt_before = (tmp_path / "run" / "ckpt-00000004.safetensors").read_bytes()
    trainer = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 8}), resume="latest", data=data)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="in step 5; the last good checkpoint is .*ckpt-00000004"):
        trainer.run(progress=False)
    assert (tmp_path / "run" / "latest").read_text() == "ckpt-00000004.safetensors"
    assert (tmp_path / "run" / "ckpt-00000004.safetensors").read_bytes() == ckpt_before


def test_nonfinite_loss_can_be_skipped(tmp_path):
    data = blob_images(64)
    trainer = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 3, "train.on_nonfinite": "skip"}), data=data)
    trainer.data.images[:] = 0
    original = trainer.data.batch

    def poisoned(indices, device=None):
        x, y = original(indices, device)
        return x * float("inf"), y

    trainer.data.batch = poisoned
    weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = trainer.run(progress=False)
    assert result.step == 3
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in weights.items())  # no update applied


def test_sampling_is_reproducible_batch_independent_and_guidance_matters(tmp_path):
    data = blob_images(64)
    cfg = tiny_config(tmp_path / "run", **{"train.steps": 12})
    trainer = Trainer(cfg, data=data)
    trainer.run(progress=False)
    sampler = Sampler(trainer.ema.module, cfg, data.spec)
    a = sampler.sample(6, solver="heun", steps=3, guidance=2.0, seed=7, batch_size=6)
    b = sampler.sample(6, solver="heun", steps=3, guidance=2.0, seed=7, batch_size=4)
    assert a.nfe == 6 and a.settings.time_grid == "late"  # Heun: 2 evaluations per step; its default grid
    assert torch.allclose(a.images, b.images, atol=1e-5)
    assert torch.equal(a.images, sampler.sample(6, solver="heun", steps=3, guidance=2.0, seed=7, batch_size=6).images)
    c = sampler.sample(6, solver="heun", steps=3, guidance=1.0, seed=7, batch_size=6)
    assert (a.images - c.images).abs().max() > 1e-3
    s1 = sampler.sample(6, solver="euler_maruyama", steps=3, sde_epsilon=0.5, seed=7, batch_size=6)
    s2 = sampler.sample(6, solver="euler_maruyama", steps=3, sde_epsilon=0.5, seed=7, batch_size=2)
    assert torch.isfinite(s1.images).all() and torch.allclose(s1.images, s2.images, atol=1e-5)


def test_sampler_from_a_run_folder_takes_classes_by_index_or_name(tmp_path):
    from imgflow.data import ImageData

    blobs = blob_images(64)
    names = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
    data = ImageData(blobs.images, blobs.labels, blobs.spec.__class__("tensors", 1, 8, names))
    train(tiny_config(tmp_path / "run", **{"train.steps": 4}), data=data, progress=False)
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    assert sampler.class_names == names and sampler.step == 4 and sampler.image_shape == (1, 8, 8)
    by_name = sampler.sample(4, labels=["three", "Seven"], steps=2)
    by_index = sampler.sample(4, labels=[3, 7], steps=2)
    assert by_name.labels.tolist() == [3, 7, 3, 7] and torch.equal(by_name.images, by_index.images)
    assert sampler.sample(3, labels="nine", steps=1).labels.tolist() == [9, 9, 9]
    everything = sampler.sample(12, steps=1)
    assert everything.labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert everything.images.shape == (12, 1, 8, 8) and everything.images.dtype == torch.float32
    pil = everything.to_pil()
    assert len(pil) == 12 and pil[0].size == (8, 8) and pil[0].mode == "L"
    assert everything.grid().size == (10 * (8 + 2) + 2, 2 * (8 + 2) + 2)  # one class per column
    with pytest.raises(ConfigError, match="unknown class 'eleven'; the tensors classes are zero, one"):
        sampler.sample(2, labels="eleven")
    with pytest.raises(ConfigError, match="class index 10 is outside 0..9"):
        sampler.sample(2, labels=[10])
    with pytest.raises(ConfigError, match="solver 'flow_map' jumps with a flow-map model"):
        sampler.sample(2, solver="flow_map")


def test_sample_script_writes_a_grid_and_raw_samples(tmp_path):
    data = blob_images(64)
    cfg = tiny_config(tmp_path / "run", **{"train.steps": 4})
    train(cfg, data=data, progress=False)
    out, raw = tmp_path / "grid.png", tmp_path / "raw.safetensors"
    cmd = [sys.executable, str(REPO / "scripts/sample_images.py"), str(tmp_path / "run"), "--out", str(out),
           "--num", "12", "--nrow", "4", "--steps", "2", "--solver", "midpoint", "--classes", "3,5", "--raw", str(raw)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "NFE 4" in proc.stdout
    assert Image.open(out).size == (4 * 10 + 2, 3 * 10 + 2)
    from safetensors.torch import load_file

    saved = load_file(str(raw))
    assert saved["images"].shape == (12, 1, 8, 8) and saved["labels"].tolist() == [3, 5] * 6


@pytest.fixture(scope="module")
def sample_inputs(tmp_path_factory):
    """A trained run, a garbage and a truncated checkpoint, for the sampling script's bad-input cases."""
    tmp_path = tmp_path_factory.mktemp("bad_sample_inputs")
    train(tiny_config(tmp_path / "run", **{"train.steps": 2, "train.checkpoint_every": 2}), data=blob_images(32), progress=False)
    ckpt = tmp_path / "run" / "ckpt-00000002.safetensors"
    (tmp_path / "garbage.safetensors").write_bytes(b"not a checkpoint at all")
    (tmp_path / "truncated.safetensors").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    return {"missing": tmp_path / "nope.safetensors", "garbage": tmp_path / "garbage.safetensors",
            "truncated": tmp_path / "truncated.safetensors", "run": tmp_path / "run", "tmp": tmp_path}


@pytest.mark.parametrize(
    "args,message",
    [
        (["{missing}", "--out", "{tmp}/g.png"], "does not exist"),
        (["{garbage}", "--out", "{tmp}/g.png"], "is not a readable safetensors checkpoint"),
        (["{truncated}", "--out", "{tmp}/g.png"], "is not a readable safetensors checkpoint"),
        (["{run}", "--out", "{tmp}/nodir/g.png"], "does not exist; create it"),
        (["{run}", "--out", "{tmp}/g.png", "--classes", "12"], "class index 12 is outside 0..9"),
        (["{run}", "--out", "{tmp}/g.png", "--classes", "cat"], "unknown class 'cat'"),
    ],
)
def test_sample_script_bad_input_is_one_line(sample_inputs, args, message, capsys):
    # in this process (run() is exactly what scripts/sample_images.py calls); a real process's missing traceback is
    # tested by test_reliability.py::test_a_bad_input_process_prints_no_traceback
    from imgflow.cli import run
    from imgflow.cli.sample import main as sample_main

    tmp_path = sample_inputs["tmp"]
    argv = [a.format(**sample_inputs) for a in args]
    capsys.readouterr()
    assert run(sample_main, argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert not (tmp_path / "g.png").exists()


def test_checkpoint_for_another_architecture_is_rejected(tmp_path):
    data = blob_images(32)
    train(tiny_config(tmp_path / "run", **{"train.steps": 2, "train.checkpoint_every": 2}), data=data, progress=False)
    ckpt = load_checkpoint(tmp_path / "run")
    other = build_model(tiny_config(tmp_path / "x", **{"model.unet.base_channels": 16}), ckpt.spec)
    with pytest.raises(CheckpointError, match="does not match the model .*of another shape"):
        load_weights_into(other, ckpt.weights("ema"), ckpt.path)


def test_cifar10_recipe_builds_and_takes_steps(tmp_path):
    """The published ~36 M-parameter recipe runs a few real optimiser steps on CPU."""
    cfg = load_config(REPO / "configs/cifar10.toml", {
        "run.output_dir": str(tmp_path / "c"), "train.steps": 2, "train.batch_size": 2, "train.sample_every": 0,
        "train.checkpoint_every": 2, "train.log_every": 1,
    })
    g = torch.Generator().manual_seed(0)
    from imgflow.data import ImageData

    data = ImageData(torch.randint(0, 256, (4, 3, 32, 32), generator=g, dtype=torch.uint8), torch.arange(4))
    trainer = Trainer(cfg, data=data)
    from imgflow.nn import count_parameters

    assert 35e6 < count_parameters(trainer.model) < 37e6
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run(progress=False)
    changed = sum(not torch.equal(v, trainer.model.state_dict()[k]) for k, v in before.items())
    assert changed > 0.9 * len(before) - 200  # nearly every tensor moved (buffers/frozen ones excepted)
    assert json.loads((tmp_path / "c" / "config.json").read_text())["model"]["unet"]["base_channels"] == 128


def test_a_checkpoint_records_the_effective_ema_decay_at_its_step(tmp_path):
    """With the warm-up, update n decays by min(d, (1 + n) / (10 + n)); after 8 steps the last update (n = 7) used
    8 / 17, far below the nominal 0.9 (a 2,000-step run at 0.999 ends at 2000 / 2009 = 0.99552)."""
    train(tiny_config(tmp_path / "run", **{"train.steps": 8, "train.ema_decay": 0.9}), data=blob_images(32), progress=False)
    ckpt = load_checkpoint(tmp_path / "run")
    assert float(ckpt.extra["ema_decay_effective"]) == pytest.approx(8 / 17, abs=1e-6)
    from imgflow.training.ema import ema_decay_at

    assert ema_decay_at(0.999, 1999) == pytest.approx(0.99552, abs=5e-6)


def test_micro_batch_sets_the_accumulation_and_a_resume_with_another_global_batch_is_refused(tmp_path):
    data = blob_images(64)
    trainer = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 2, "train.micro_batch": 2}), data=data)
    assert (trainer.grad_accum, trainer.micro) == (4, 2)  # batch 8 = 1 process x 4 x 2
    trainer.run(progress=False)
    with pytest.raises(CheckpointError, match="its global batch was train.batch_size = 8, this run has 16"):
        Trainer(tiny_config(tmp_path / "run", **{"train.steps": 4, "train.batch_size": 16}), resume="latest", data=data)
    with pytest.raises(ConfigError, match="train.micro_batch = 2 decides the accumulation, and train.grad_accum = 2 is set too"):
        tiny_config(tmp_path / "other", **{"train.micro_batch": 2, "train.grad_accum": 2})
