"""The trainer's seams, tested without a run: batch functions, device reads, the non-finite guard, trackers, fp16, EMA."""

import math
import sys

import pytest
import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker

from imgflow.checkpoint import list_checkpoints, load_checkpoint
from imgflow.config import ConfigError
from imgflow.data import ImageData
from imgflow.training.batches import BatchSchedule, assemble_micro_batch, draw_global_batch, micro_batch_rows
from imgflow.training.ema import EMA, ema_decay_at
from imgflow.training.metrics_log import read_metrics
from imgflow.training.trainer import NonFiniteLossError, Trainer
from tests.image_helpers import blob_images, tiny_config


def uniform_times(n, gen, device):
    return torch.rand(n, generator=gen, device=device), None


def test_the_global_batch_is_a_pure_function_of_seed_and_step():
    schedule = BatchSchedule(40, 8, seed=3)
    kw = dict(seed=3, schedule=schedule, image_shape=(1, 4, 4), draw_times=uniform_times, label_dropout=0.5, device="cpu")
    a, b = draw_global_batch(7, **kw), draw_global_batch(7, **kw)
    fresh = draw_global_batch(7, **{**kw, "schedule": BatchSchedule(40, 8, seed=3)})  # a resumed run's fresh schedule
    for x, y in ((a, b), (a, fresh)):
        assert all(torch.equal(getattr(x, k), getattr(y, k)) for k in ("indices", "times", "noise", "drop_label", "flip"))
    other = draw_global_batch(8, **kw)
    assert not torch.equal(a.noise, other.noise) and not torch.equal(a.times, other.times)
    assert 0 < int(a.drop_label.sum()) < 8 or 0 < int(other.drop_label.sum()) < 8  # p = 0.5 drops some, not all


def test_processes_and_accumulation_split_the_same_global_batch():
    """One process with 2 micro-batches and 2 processes with one each use the same rows per update."""
    data = blob_images(32)
    schedule = BatchSchedule(32, 8, seed=0)
    batch = draw_global_batch(2, seed=0, schedule=schedule, image_shape=(1, 8, 8), draw_times=uniform_times,
                              label_dropout=0.3, device="cpu")

    def assemble(rows):
        return assemble_micro_batch(batch, rows, data, hflip=True, null_label=10)

    one_process = [assemble(micro_batch_rows(m, 1, 0, 4)) for m in range(2)]
    two_processes = [assemble(micro_batch_rows(0, 2, rank, 4)) for rank in range(2)]
    for a, b in zip(one_process, two_processes):
        assert torch.equal(a.data, b.data) and torch.equal(a.labels, b.labels) and torch.equal(a.noise, b.noise)
    full = assemble(slice(0, 8))
    x, y = data.batch(batch.indices)
    mirrored = torch.where(batch.flip[:, None, None, None], x.flip(-1), x)
    assert torch.equal(full.data, mirrored)  # flips where the batch says so, nowhere else
    assert torch.equal(full.labels, torch.where(batch.drop_label, torch.full_like(y, 10), y))
    unconditional = assemble_micro_batch(batch, slice(0, 8), data, hflip=False, null_label=None)
    assert unconditional.labels is None and torch.equal(unconditional.data, x)


def test_training_reads_the_device_once_per_log_window(tmp_path, monkeypatch):
    """The loss, the gradient norm, the EMA counter, the non-finite guard and the time budget cost no per-step read.

    On a GPU every read of a device value (item, tolist, bool(), float(), ...) waits for the device.
    This counts such reads made by the trainer's code (imgflow) and accelerate's over 12 steps with
    log_every = 4: one per log window, nothing else. (torch's Adam reads its step counter, a host
    tensor on every device unless capturable, so reads from inside torch are not counted.)
    """
    trainer = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 12, "train.log_every": 4, "train.checkpoint_every": 100,
                                                       "train.max_minutes": 60.0, "train.ema_decay": 0.9}),
                      data=blob_images(64))
    reads = []

    def counting(name, original):
        def read(self, *args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if caller.startswith(("imgflow", "accelerate")):
                reads.append((name, caller, sys._getframe(1).f_lineno))
            return original(self, *args, **kwargs)

        return read

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy"):
        monkeypatch.setattr(torch.Tensor, name, counting(name, getattr(torch.Tensor, name)))
    result = trainer.run(progress=False)
    monkeypatch.undo()
    assert result.step == 12
    # steps 4, 8 and 12 each read the window once; the final checkpoint at 12 reuses that read
    assert [(name, caller) for name, caller, _ in reads] == [("tolist", "imgflow.training.trainer")] * 3, reads
    assert [m["step"] for m in read_metrics(tmp_path / "run")] == [4, 8, 12]


def test_the_non_finite_guard_names_the_first_bad_step_and_saves_nothing_after_it(tmp_path):
    trainer = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 12, "train.log_every": 5, "train.checkpoint_every": 2}),
                      data=blob_images(64))
    original = trainer.objective.per_sample_loss

    def poisoned(forward, batch, **kw):
        loss, logged = original(forward, batch, **kw)
        if trainer.step == 2:  # the third step (0-based 2) goes bad
            return loss * float("nan"), logged * float("nan")
        return loss, logged

    trainer.objective.per_sample_loss = poisoned
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss in step 3; the last good checkpoint is .*ckpt-00000002"):
        trainer.run(progress=False)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["ckpt-00000002.safetensors"]
    assert read_metrics(tmp_path / "run") == []  # the first log (step 5) would have held the NaN: not written


class RecordingTracker(GeneralTracker):
    name = "recording"
    requires_logging_directory = False
    main_process_only = True

    def __init__(self):
        super().__init__()
        self.config, self.logged = None, []

    @property
    def tracker(self):
        return self

    def store_init_configuration(self, values):
        self.config = values

    def log(self, values, step=None, **kwargs):
        self.logged.append((step, dict(values)))


def test_metrics_go_to_accelerate_trackers_as_well_as_the_jsonl_file(tmp_path):
    recorder = RecordingTracker()
    Trainer(tiny_config(tmp_path / "run", **{"train.steps": 4}), data=blob_images(64), trackers=[recorder]).run(progress=False)
    jsonl = read_metrics(tmp_path / "run")
    assert [step for step, _ in recorder.logged] == [m["step"] for m in jsonl] == [2, 4]
    for (_, values), record in zip(recorder.logged, jsonl):
        assert values["loss"] == record["loss"] and values["lr"] == record["lr"]
        bins = {k: v for k, v in values.items() if k.startswith("loss_by_t/")}
        assert sorted(bins.values()) == sorted(v for v in record["loss_by_t"] if v is not None)
    assert recorder.config["train.steps"] == 4 and recorder.config["model.unet.channel_mults"] == "[1, 2]"


def test_tensorboard_through_accelerate_writes_the_logged_loss(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(tiny_config(tmp_path / "run", **{"train.steps": 4, "train.log_with": "tensorboard"}), data=blob_images(64)).run(progress=False)
    events = list((tmp_path / "run" / "trackers").rglob("events.out.tfevents.*"))
    assert events
    acc = EventAccumulator(str(events[0].parent)).Reload()
    losses = [(e.step, e.value) for e in acc.Scalars("loss")]
    assert losses == [(m["step"], pytest.approx(m["loss"], rel=1e-6)) for m in read_metrics(tmp_path / "run")]


def test_a_tracker_that_is_not_installed_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"train.log_with = 'wandb' needs the wandb package, which is not installed: `pip install wandb`"):
        Trainer(tiny_config(tmp_path / "run", **{"train.log_with": "wandb"}), data=blob_images(64))
    assert not (tmp_path / "run").exists()


def reset_accelerate():
    """accelerate keeps one process-wide state; a test that changes the mixed precision starts and ends with a fresh one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=True)


@pytest.fixture
def fresh_accelerate_state():
    reset_accelerate()
    yield
    reset_accelerate()


def fp16_accelerator():
    """accelerate's fp16 as on a GPU: autocast in float16 and a gradient scaler (on a CPU accelerate gives none, so we add one)."""
    reset_accelerate()
    acc = Accelerator(cpu=True, mixed_precision="fp16")
    acc.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12, growth_interval=2)
    return acc


def test_fp16_resume_restores_the_gradient_scaler_and_is_exact(tmp_path, fresh_accelerate_state):
    data = blob_images(64)
    full = Trainer(tiny_config(tmp_path / "full", **{"train.steps": 6}), data=data, accelerator=fp16_accelerator())
    full.run(progress=False)
    Trainer(tiny_config(tmp_path / "part", **{"train.steps": 4}), data=data, accelerator=fp16_accelerator()).run(progress=False)
    saved = load_checkpoint(tmp_path / "part").grad_scaler
    assert saved["scale"] == 2.0**14  # grown twice in four steps (growth interval 2)
    resumed = Trainer(tiny_config(tmp_path / "part", **{"train.steps": 6}), resume="latest", data=data, accelerator=fp16_accelerator())
    assert resumed.accelerator.scaler.get_scale() == 2.0**14
    resumed.run(progress=False)
    assert resumed.accelerator.scaler.state_dict() == full.accelerator.scaler.state_dict()
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    # a checkpoint written without loss scaling cannot silently resume under fp16
    reset_accelerate()
    Trainer(tiny_config(tmp_path / "fp32", **{"train.steps": 2}), data=data).run(progress=False)
    from imgflow.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="written without fp16 loss scaling"):
        Trainer(tiny_config(tmp_path / "fp32", **{"train.steps": 4}), resume="latest", data=data, accelerator=fp16_accelerator())


def test_ema_follows_its_formula_with_a_host_counter():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model)  # the first update copies
    assert torch.equal(ema.module.weight, model.weight) and ema.num_updates == 1
    with torch.no_grad():
        model.weight.fill_(3.0)
    ema.update(model)
    d = ema_decay_at(0.9, 1)  # update n uses the decay of n - 1: min(0.9, 2 / 11)
    assert math.isclose(d, 2 / 11)
    assert torch.allclose(ema.module.weight, torch.full_like(model.weight, d * 1.0 + (1 - d) * 3.0))
    assert not ema.module.weight.requires_grad


def test_unlabelled_data_trains_an_unconditional_model(tmp_path):
    blobs = blob_images(32)
    data = ImageData(blobs.images, None)
    trainer = Trainer(tiny_config(tmp_path / "run", **{"train.steps": 2}), data=data)
    assert not trainer.conditional and trainer.model.class_embed is None
    trainer.run(progress=False)
    assert load_checkpoint(tmp_path / "run").spec.num_classes == 0
