"""The training loop: accelerate for devices/DDP/mixed precision, exact resume, safe outputs.

Determinism: the global batch of step k (its data indices, times, noise, label drops and
flips) is drawn from generators seeded by (seed, k), and each process takes its slice of
it. A run therefore resumes bit-exactly from a checkpoint that stores only weights,
optimiser/scheduler state and k, and N processes see the same samples as one process at
the same global batch size.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.profiler import record_function

from imgflow.checkpoint import (
    Checkpoint,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    load_weights_into,
    remove_stale_temporaries,
    save_checkpoint,
)
from imgflow.config import ConfigError, RunConfig
from imgflow.core import LOSSES
from imgflow.data import NUM_CLASSES, BatchSchedule, ImageData, load_image_data
from imgflow.factory import build_model, build_path, is_class_conditional
from imgflow.nn import count_parameters
from imgflow.sampling import SamplerSettings, default_labels, sample_images, save_grid
from imgflow.seeding import derive_seed, generator
from imgflow.training.ema import make_ema
from imgflow.training.metrics_log import MetricsLog

#: sections whose change makes a checkpoint unusable for resuming
_FROZEN_SECTIONS = ("data", "model", "flow")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf and train.on_nonfinite = 'stop'."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_checkpoint: Path | None
    stopped_by: str  # "steps" | "time" | "nonfinite"


def check_resume_compatible(ckpt: Checkpoint, cfg: RunConfig) -> None:
    """The checkpoint's data/model/flow sections must equal the run's."""
    old, new = ckpt.config.to_dict(), cfg.to_dict()
    for section in _FROZEN_SECTIONS:
        for key, value in new[section].items():
            if old[section].get(key) != value:
                raise CheckpointError(
                    f"cannot resume from {ckpt.path}: it was trained with {section}.{key} = {old[section].get(key)!r}, "
                    f"this run has {value!r}; use the same setting or start a new run.output_dir"
                )


def check_writable(run_dir: Path) -> None:
    """Fail early, creating nothing, if run_dir cannot be created or written."""
    probe = run_dir
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"run.output_dir {run_dir} cannot be created: {probe} is a file; choose another run.output_dir")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"run.output_dir {run_dir} is not writable (no write permission on {probe}); choose another run.output_dir")


def make_run_dir(run_dir: Path) -> None:
    """Create run_dir and prove that a file can be written there, or raise one clear error."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"run.output_dir {run_dir} is not writable ({exc.strerror}); choose another run.output_dir") from None


def time_sampler(cfg: RunConfig, n: int, gen: torch.Generator, device: torch.device) -> Tensor:
    """t ~ U[0, 1) or logit-normal (sigmoid of N(m, s^2)), shape (n,)."""
    f = cfg.flow
    if f.time_sampling == "logit_normal":
        return torch.sigmoid(f.logit_normal_mean + f.logit_normal_std * torch.randn(n, generator=gen, device=device))
    return torch.rand(n, generator=gen, device=device)


def lr_lambda_factory(warmup_steps: int):
    def lr_lambda(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return lr_lambda


class Trainer:
    """Holds the state of one run; `run()` trains to cfg.train.steps (or the time budget)."""

    def __init__(self, cfg: RunConfig, resume: str | None = None, data: ImageData | None = None, accelerator: Any = None) -> None:
        from accelerate import Accelerator

        self.cfg = cfg
        t = cfg.train
        # without a GPU, accelerate recognises a torchrun/accelerate multi-process launch only in CPU mode
        self.accelerator = accelerator or Accelerator(cpu=not _has_accelerator_device())
        acc = self.accelerator
        self.is_main = acc.is_main_process
        self.world = acc.num_processes
        self.rank = acc.process_index
        per_step = self.world * t.grad_accum
        if t.batch_size % per_step:
            raise ConfigError(
                f"train.batch_size {t.batch_size} is not divisible by processes ({self.world}) x train.grad_accum ({t.grad_accum}); "
                f"use a multiple of {per_step}"
            )
        self.micro = t.batch_size // per_step
        self.run_dir = Path(cfg.run.output_dir)

        # everything that can be wrong is checked before anything is written or loaded
        ckpt: Checkpoint | None = None
        if resume:
            ckpt = load_checkpoint(resume, self.run_dir)
            check_resume_compatible(ckpt, cfg)
        elif list_checkpoints(self.run_dir):
            raise ConfigError(
                f"run.output_dir {self.run_dir} already holds checkpoints; pass --resume latest to continue it or choose another run.output_dir"
            )
        check_writable(self.run_dir)
        torch.manual_seed(derive_seed(cfg.run.seed, "init"))
        self.model = build_model(cfg)
        self.conditional = is_class_conditional(cfg)
        self.path = build_path(cfg)
        self.loss_fn = LOSSES[cfg.flow.prediction]

        if data is None:
            with acc.main_process_first():
                d = cfg.data
                data = load_image_data(d.dataset, d.data_root, train=True, image_size=d.image_size, resize=d.resize, download=d.download)
        expected = (self.model_channels(), cfg.data.image_size, cfg.data.image_size)
        if tuple(data.shape) != expected:
            raise ConfigError(f"the data has images of shape {tuple(data.shape)} but the model expects {expected}; check data.image_size")
        if t.batch_size > len(data):
            raise ConfigError(f"train.batch_size {t.batch_size} is larger than the data set ({len(data)} images); lower it")
        self.data = data.to(acc.device)
        self.batches = BatchSchedule(len(self.data), t.batch_size, cfg.run.seed)
        if self.is_main:
            make_run_dir(self.run_dir)
            remove_stale_temporaries(self.run_dir)

        if t.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.to(acc.device)
        self.ema = make_ema(self.model, t.ema_decay) if t.ema_decay > 0 else None
        self.optimizer = torch.optim.Adam(
            self.model.parameters(), lr=t.lr, betas=(t.adam_beta1, t.adam_beta2), weight_decay=t.weight_decay
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda_factory(t.warmup_steps))
        self.step = 0
        if ckpt is not None:
            self._restore(ckpt)
        self.prepared, self.optimizer = acc.prepare(self.model, self.optimizer)
        self.forward = torch.compile(self.prepared) if t.compile else self.prepared
        self.last_checkpoint: Path | None = ckpt.path if ckpt is not None else None

    def model_channels(self) -> int:
        from imgflow.data import CHANNELS

        return CHANNELS[self.cfg.data.dataset]

    # --- state ------------------------------------------------------------------------------
    def _restore(self, ckpt: Checkpoint) -> None:
        load_weights_into(self.model, {k: v.to(self.accelerator.device) for k, v in ckpt.model.items()}, ckpt.path)
        if self.ema is not None:
            if not ckpt.ema:
                raise CheckpointError(f"{ckpt.path} holds no EMA weights but train.ema_decay > 0; resume with the run's own config")
            load_weights_into(self.ema.module, ckpt.ema, ckpt.path)
            self.ema.n_averaged.fill_(int(ckpt.extra.get("ema_updates", ckpt.step)))
        if ckpt.optimizer is None or ckpt.scheduler is None:
            raise CheckpointError(f"{ckpt.path} has no optimiser/scheduler state (a weights-only file?); resume needs a training checkpoint")
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        self.step = ckpt.step

    def save(self) -> Path | None:
        """Main process writes the checkpoint of the current step; all processes wait for it."""
        path = None
        if self.is_main:
            extra = {"ema_updates": str(int(self.ema.n_averaged.item()))} if self.ema is not None else {}
            path = save_checkpoint(
                self.run_dir,
                self.step,
                self.cfg,
                self.model.state_dict(),
                self.ema.module.state_dict() if self.ema is not None else None,
                self.optimizer.state_dict(),
                self.scheduler.state_dict(),
                keep_last=self.cfg.train.keep_last,
                extra_metadata=extra,
            )
            self.last_checkpoint = path
        self.accelerator.wait_for_everyone()
        return path

    def sample_grid(self) -> Path | None:
        """Main process draws the fixed-seed grid of the EMA (or raw) model at this step."""
        if not self.is_main:
            return None
        s = self.cfg.sample
        net = self.ema.module if self.ema is not None else self.model
        was_training = net.training
        images, _, _ = sample_images(
            net, self.cfg, SamplerSettings.from_config(self.cfg), s.num_images, seed=s.seed,
            labels=default_labels(s.num_images) if self.conditional else None, device=self.accelerator.device,
        )
        net.train(was_training)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        return save_grid(images, self.run_dir / "samples" / f"step-{self.step:08d}.png", nrow=10 if self.conditional else 8)

    # --- one step ---------------------------------------------------------------------------
    def draw_global_batch(self, step: int) -> dict[str, Tensor]:
        """Indices, times, noise, label-drop and flip masks of the whole global batch of `step`."""
        cfg, dev = self.cfg, self.accelerator.device
        b = cfg.train.batch_size
        gen = generator(cfg.run.seed, "step", step, device=dev)
        shape = (b, *self.data.shape)
        return {
            "indices": self.batches.indices(step).to(dev),
            "t": time_sampler(cfg, b, gen, dev),
            "noise": torch.randn(shape, generator=gen, device=dev),
            "drop": torch.rand(b, generator=gen, device=dev) < cfg.flow.label_dropout,
            "flip": torch.rand(b, generator=gen, device=dev) < 0.5,
        }

    def micro_batch(self, draw: dict[str, Tensor], m: int) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """This process's part m of the global batch: (z, t, noise, model kwargs)."""
        lo = (m * self.world + self.rank) * self.micro
        sl = slice(lo, lo + self.micro)
        z, y = self.data.batch(draw["indices"][sl])
        if self.cfg.data.hflip:
            z = torch.where(draw["flip"][sl, None, None, None], z.flip(-1), z)
        if self.cfg.train.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        kwargs: dict[str, Tensor] = {}
        if self.conditional:
            kwargs["y"] = torch.where(draw["drop"][sl], torch.full_like(y, NUM_CLASSES), y)
        return z, draw["t"][sl], draw["noise"][sl], kwargs

    def train_step(self) -> tuple[float, float | None]:
        """One optimiser step over the global batch; returns (mean loss across processes, grad norm)."""
        acc, t = self.accelerator, self.cfg.train
        torch.manual_seed(derive_seed(self.cfg.run.seed, "dropout", self.step, self.rank))
        with record_function("step/draw_batch"):
            draw = self.draw_global_batch(self.step)
        total = torch.zeros((), device=acc.device)
        for m in range(t.grad_accum):
            with record_function("step/draw_batch"):
                z, tt, noise, kwargs = self.micro_batch(draw, m)
            sync = m == t.grad_accum - 1
            ctx = acc.no_sync(self.prepared) if not sync else nullcontext()
            with ctx:
                with record_function("step/forward_loss"):
                    loss = self.loss_fn(self.forward, self.path, z, tt, x0=noise, model_kwargs=kwargs, reduction=self.cfg.flow.loss_reduction)
                with record_function("step/backward"):
                    acc.backward(loss / t.grad_accum)
            total += loss.detach() / t.grad_accum
        mean_loss = acc.reduce(total, reduction="mean").item() if self.world > 1 else total.item()
        if not math.isfinite(mean_loss):
            self.optimizer.zero_grad(set_to_none=True)
            return mean_loss, None
        grad_norm = None
        with record_function("step/clip_optimizer"):
            if t.grad_clip > 0:
                grad_norm = float(acc.clip_grad_norm_(self.prepared.parameters(), t.grad_clip))
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            with record_function("step/ema"):
                self.ema.update_parameters(self.model)
        return mean_loss, grad_norm

    # --- the loop -----------------------------------------------------------------------------
    def run(self, progress: bool = True) -> TrainResult:
        from tqdm.auto import tqdm

        cfg, t, acc = self.cfg, self.cfg.train, self.accelerator
        if self.is_main:
            (self.run_dir / "config.json").write_text(cfg.to_json())
            log = MetricsLog(self.run_dir, resume_step=self.step)
            acc.print(
                f"training {cfg.model.arch} ({count_parameters(self.model):,} parameters) on {cfg.data.dataset} "
                f"[{len(self.data)} images] | {self.world} process(es), device {acc.device}, mixed precision {acc.mixed_precision} | "
                f"global batch {t.batch_size} = {self.world} x {t.grad_accum} x {self.micro} | from step {self.step} to {t.steps}"
            )
        bar = tqdm(total=t.steps, initial=self.step, disable=not (self.is_main and progress), dynamic_ncols=True, file=sys.stdout)
        start = time.perf_counter()
        window_loss, window_n, window_t0 = 0.0, 0, time.perf_counter()
        stopped_by = "steps"
        self.prepared.train()
        while self.step < t.steps:
            loss, grad_norm = self.train_step()
            if not math.isfinite(loss):
                message = f"non-finite loss ({loss}) at step {self.step}"
                if t.on_nonfinite == "stop":
                    bar.close()
                    if self.is_main:
                        log.close()
                    kept = f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else "; no checkpoint was written yet"
                    raise NonFiniteLossError(message + kept + " (lower train.lr, or set train.on_nonfinite = 'skip')")
                acc.print(f"warning: {message}; skipped the update (train.on_nonfinite = 'skip')")
                self.step += 1
                bar.update(1)
                continue
            self.step += 1
            window_loss += loss
            window_n += 1
            bar.update(1)
            if self.step % t.log_every == 0 or self.step == t.steps:
                now = time.perf_counter()
                rate = window_n * t.batch_size / (now - window_t0)
                record = {
                    "step": self.step,
                    "loss": window_loss / window_n,
                    "lr": self.scheduler.get_last_lr()[0],
                    "images_per_s": rate,
                    "elapsed_s": now - start,
                }
                if grad_norm is not None:
                    record["grad_norm"] = grad_norm
                if self.is_main:
                    log.write(record)
                bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{rate:.0f}")
                window_loss, window_n, window_t0 = 0.0, 0, now
            budget_hit = self._budget_exhausted(start)
            if self.step % t.checkpoint_every == 0 or self.step == t.steps or budget_hit:
                self.save()
            if t.sample_every and (self.step % t.sample_every == 0 or self.step == t.steps or budget_hit):
                self.sample_grid()
            if budget_hit:
                stopped_by = "time"
                break
        bar.close()
        if self.is_main:
            log.close()
        return TrainResult(self.run_dir, self.step, self.last_checkpoint, stopped_by)

    def _budget_exhausted(self, start: float) -> bool:
        """All processes agree on the main process's clock."""
        minutes = self.cfg.train.max_minutes
        if minutes <= 0:
            return False
        flag = torch.tensor([float(time.perf_counter() - start >= 60.0 * minutes)], device=self.accelerator.device)
        if self.world > 1:
            from accelerate.utils import broadcast

            flag = broadcast(flag, from_process=0)
        return bool(flag.item())


def _has_accelerator_device() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.is_available() or bool(mps and mps.is_available())


def train(cfg: RunConfig, resume: str | None = None, data: ImageData | None = None, progress: bool = True) -> TrainResult:
    """Train the run described by cfg (resuming from a checkpoint spec if given)."""
    return Trainer(cfg, resume=resume, data=data).run(progress=progress)
