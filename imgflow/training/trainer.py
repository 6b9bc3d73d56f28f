"""The training loop: accelerate for devices/DDP/mixed precision, exact resume, safe outputs.

The pieces live beside it: the batch of each step (`batches`, a pure function of (seed, step)),
the loss (`objectives`), the weight average (`ema`), the run folder and its lock
(`imgflow.run_folder`), signals (`interrupts`) and the metrics record (`metrics_log`).

The loop never waits for the device between steps: the loss, its per-time-bin sums, the
gradient norm and the first non-finite step accumulate in device tensors, and the host reads
them once per `train.log_every` steps (and before every checkpoint or grid, so no weights from
after a non-finite step are ever saved). With one process the time budget and stop signals
are host facts checked every step; several processes agree on them at the same read.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import Tensor
from torch.profiler import record_function

from imgflow.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointWriteError,
    extra_ema_name,
    list_checkpoints,
    load_weights_into,
    remove_stale_temporaries,
    save_checkpoint,
)
from imgflow.config import ConfigError, RunConfig
from imgflow.core.progress import progress_bar
from imgflow.data import ImageData
from imgflow.devices import restart_launch_problem
from imgflow.files import atomic_write_bytes
from imgflow.nn import count_parameters
from imgflow.objectives import MicroBatch, Preview
from imgflow.resolved_run import ResolvedRun, check_run, resolve_run
from imgflow.run_folder import RunLock, check_resume_compatible, check_writable, checkpoint_to_resume, make_run_dir
from imgflow.sampler import Sampler
from imgflow.seeding import derive_seed
from imgflow.training.batches import BatchSchedule, GlobalBatch, assemble_micro_batch, draw_global_batch, micro_batch_rows
from imgflow.training.ema import EMA
from imgflow.training.interrupts import StopRequests, TrainingInterrupted
from imgflow.training.metrics_log import MetricsLog, check_tracker_available, flat_config, scalar_metrics
from imgflow.training.model_handle import TrainingModel
from imgflow.training.optimizer import build_optimizer
from imgflow.training.warm_start import warm_start

#: equal-width bins of t in [0, 1] over which the metrics log keeps the mean loss
TIME_BINS = 10


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or Inf and train.on_nonfinite = 'stop'."""


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    last_checkpoint: Path | None
    stopped_by: str  # "steps" | "time"


def lr_lambda_factory(warmup_steps: int):
    def lr_lambda(step: int) -> float:
        return min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0

    return lr_lambda


class LogWindow:
    """Device-side sums over the steps since the last log: nothing here is read until `read`."""

    def __init__(self, device: torch.device, parts: tuple[str, ...] = ()) -> None:
        self.device = device
        self.parts = parts
        self.steps = 0
        self.samples = 0  # this process's samples in the sums (host count: shapes are known without a read)
        self.t0 = time.perf_counter()
        zeros = lambda *shape: torch.zeros(shape, device=device)
        self.loss_sum, self.grad_norm_sum = zeros(), zeros()
        self.bin_sum, self.bin_count = zeros(TIME_BINS), zeros(TIME_BINS)
        self.part_sums = zeros(len(parts))

    def add(self, per_sample: Tensor, times: Tensor, parts: dict[str, Tensor] | None = None) -> None:
        if self.parts:
            self.part_sums += torch.stack([parts[name].detach().float().sum() for name in self.parts])
        per_sample = per_sample.detach().float()
        self.samples += per_sample.numel()
        self.loss_sum += per_sample.sum()
        bins = (times.detach() * TIME_BINS).long().clamp_(0, TIME_BINS - 1)
        self.bin_sum.index_add_(0, bins, per_sample)
        self.bin_count.index_add_(0, bins, torch.ones_like(per_sample))

    def packed(self) -> Tensor:
        return torch.cat([self.loss_sum[None], self.grad_norm_sum[None], self.bin_sum, self.bin_count, self.part_sums])


class Trainer:
    """Holds the state of one run; `run()` trains to cfg.train.steps (or the time budget).

    Everything that can be wrong (config, data, checkpoint, output folder, a live run in the
    same folder) is checked before anything is written. `trackers`: extra accelerate
    `GeneralTracker` instances to log to, besides train.log_with.
    """

    def __init__(self, cfg: RunConfig, resume: str | None = None, data: ImageData | None = None, accelerator: Any = None,
                 trackers: list[Any] | None = None, progress: bool = True) -> None:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration

        self.cfg = cfg
        train = cfg.train
        self.run_dir = Path(cfg.run.output_dir)
        check_tracker_available(train.log_with)
        problem = restart_launch_problem()
        if problem and accelerator is None:
            raise ConfigError(problem)
        log_with = ([train.log_with] if train.log_with != "none" else []) + list(trackers or [])
        # without a GPU, accelerate recognises a torchrun/accelerate multi-process launch only in CPU mode
        self.accelerator = accelerator or Accelerator(
            cpu=not _has_accelerator_device(), log_with=log_with or None,
            project_config=ProjectConfiguration(project_dir=str(self.run_dir), logging_dir=str(self.run_dir / "trackers")),
        )
        acc = self.accelerator
        self.is_main = acc.is_main_process
        self.world = acc.num_processes
        self.rank = acc.process_index
        # torchrun sets LOCAL_WORLD_SIZE (processes on this machine); devices come from the local rank (accelerate)
        self.nodes = max(1, self.world // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", self.world))))
        self.grad_accum = train.grad_accum
        if train.micro_batch:  # the per-process batch is fixed, the accumulation follows the process count
            per_pass = self.world * train.micro_batch
            if train.batch_size % per_pass:
                raise ConfigError(f"train.batch_size {train.batch_size} is not divisible by processes ({self.world}) x train.micro_batch "
                                  f"({train.micro_batch}); use a multiple of {per_pass}, or another micro_batch")
            self.grad_accum = train.batch_size // per_pass
        per_step = self.world * self.grad_accum
        if train.batch_size % per_step:
            raise ConfigError(
                f"train.batch_size {train.batch_size} is not divisible by processes ({self.world}) x train.grad_accum "
                f"({train.grad_accum}); use a multiple of {per_step}, or set train.micro_batch"
            )
        self.micro = train.batch_size // per_step

        # everything that can be wrong is checked before anything is written (or a folder of images converted)
        codec = check_run(cfg, acc.device)
        ckpt = checkpoint_to_resume(cfg, resume, check_lock=self.is_main)
        check_writable(self.run_dir)
        with acc.main_process_first():
            self.resolved: ResolvedRun = resolve_run(cfg, data, codec=codec, device=acc.device, progress=self.is_main and progress,
                                                     log=acc.print)
        run = self.resolved
        if ckpt is not None:
            check_resume_compatible(ckpt, cfg, run.spec)
        if train.batch_size > len(run.data):
            raise ConfigError(f"train.batch_size {train.batch_size} is larger than the data set ({len(run.data)} images); lower it")
        self.codec, self.spec, self.record, self.model = run.codec, run.spec, run.record, run.network
        if train.init_from and ckpt is None:  # checked (and loaded) before the run folder is touched
            source = warm_start(self.model, self.record, train.init_from)
            acc.print(f"starting from the weights of {source} (train.init_from)")
        elif run.starts_from_teacher and ckpt is None:
            source = warm_start(self.model, self.record, run.teacher.source, key=f"flow.{run.entry.name}.init_from_teacher")
            acc.print(f"starting from the teacher's weights, {source} (the second time's embedding new and zero)")
        if run.teacher is not None:
            recorded = ckpt.extra.get("teacher_digest") if ckpt is not None else None
            if recorded is not None and recorded != run.teacher.digest:
                raise ConfigError(f"flow.{run.entry.name}.teacher = {run.entry.teacher(cfg.flow.options)!r} now names other weights "
                                  f"({run.teacher.source}) than the run was distilling; resume with the teacher it started from, "
                                  "or start a new run")
            acc.print(f"distilling the teacher {run.teacher.source} at guidance {run.entry.trained_guidance(cfg.flow.options):g}")
        self.conditional = self.record.conditional
        self.null_label = self.record.null_label
        self.objective = run.objective
        self.budget_spent = run.setup_seconds if ckpt is None else 0.0  # seconds train.max_minutes counts before the first step
        self.log_parts = run.entry.log_parts

        # from here on the run folder is ours
        self.lock: RunLock | None = None
        if self.is_main:
            make_run_dir(self.run_dir)
            self.lock = RunLock(self.run_dir).acquire()
            if ckpt is None and list_checkpoints(self.run_dir):  # another fresh run won the race to this folder
                self.lock.release()
                raise ConfigError(f"run.output_dir {self.run_dir} already holds checkpoints; pass --resume latest or choose another")
            remove_stale_temporaries(self.run_dir)

        try:
            self._set_up(run.data, ckpt)
        except BaseException:
            if self.lock is not None:
                self.lock.release()
            raise

    def _set_up(self, data: ImageData, ckpt: Checkpoint | None) -> None:
        """Data on the device, model, EMA, optimiser and scheduler, restored from ckpt when resuming."""
        acc, train, cfg = self.accelerator, self.cfg.train, self.cfg
        self.data = data.to(acc.device)
        self.batches = BatchSchedule(len(self.data), train.batch_size, cfg.run.seed,
                                     device=acc.device if self.data.resident else "cpu")
        if train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.to(acc.device)
        self.ema = EMA(self.model, train.ema_decay, train.ema_warmup) if train.ema_decay > 0 else None
        self.extra_emas = {extra_ema_name(d): EMA(self.model, d, warmup=False) for d in train.extra_ema_decays}  # plain: beside the warm-up one
        self.optimizer = build_optimizer(self.model, train)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lr_lambda_factory(train.warmup_steps))
        self.step = 0
        if ckpt is not None:
            self._restore(ckpt)
        self.prepared, self.optimizer = acc.prepare(self.model, self.optimizer)
        self.forward = torch.compile(self.prepared) if train.compile else self.prepared
        self.training_model = TrainingModel(self.forward, self.model)
        self.last_checkpoint: Path | None = ckpt.path if ckpt is not None else None
        self._first_bad = torch.full((), -1, dtype=torch.long, device=acc.device)
        self._checked_at = -1

    # --- state ------------------------------------------------------------------------------
    def _restore(self, ckpt: Checkpoint) -> None:
        load_weights_into(self.model, {k: v.to(self.accelerator.device) for k, v in ckpt.model.items()}, ckpt.path)
        if self.ema is not None:
            if not ckpt.ema:
                raise CheckpointError(f"{ckpt.path} holds no EMA weights but train.ema_decay > 0; resume with the run's own config")
            load_weights_into(self.ema.module, ckpt.ema, ckpt.path)
            self.ema.num_updates = int(ckpt.extra.get("ema_updates", ckpt.step))
        for name, ema in self.extra_emas.items():
            if name not in ckpt.extra_ema:
                raise CheckpointError(f"{ckpt.path} holds no {name} weights but train.extra_ema_decays asks for them; resume with "
                                      "the run's own config")
            load_weights_into(ema.module, ckpt.extra_ema[name], ckpt.path)
            ema.num_updates = int(ckpt.extra.get("ema_updates", ckpt.step))
        if ckpt.optimizer is None or ckpt.scheduler is None:
            raise CheckpointError(f"{ckpt.path} has no optimiser/scheduler state (a weights-only file?); resume needs a training checkpoint")
        self.optimizer.load_state_dict(ckpt.optimizer)
        self.scheduler.load_state_dict(ckpt.scheduler)
        scaler = self.accelerator.scaler
        if scaler is not None:
            if ckpt.grad_scaler is None:
                raise CheckpointError(f"{ckpt.path} was written without fp16 loss scaling; resume it with the mixed precision it "
                                      "was trained with")
            scaler.load_state_dict(ckpt.grad_scaler)
        self.step = ckpt.step

    def save(self) -> Path | None:
        """Main process writes the checkpoint of the current step; all processes wait for it."""
        self._ensure_finite()
        path = None
        if self.is_main:
            extra = {"ema_updates": str(self.ema.num_updates), "ema_decay_effective": f"{self.ema.current_decay:.6g}"} if self.ema is not None else {}
            if self.resolved.teacher is not None:  # a resume refuses a teacher name that now means other weights
                extra["teacher_digest"] = self.resolved.teacher.digest
            scaler = self.accelerator.scaler
            try:
                path = save_checkpoint(
                    self.run_dir, self.step, self.cfg, self.model.state_dict(),
                    self.ema.module.state_dict() if self.ema is not None else None,
                    self.optimizer.state_dict(), self.scheduler.state_dict(),
                    keep_last=self.cfg.train.keep_last, extra_metadata=extra, spec=self.spec,
                    grad_scaler_state=scaler.state_dict() if scaler is not None else None, record=self.record,
                    autoencoder_state=self.codec.weights_to_save() if self.codec is not None else None,
                    extra_ema_states={name: ema.module.state_dict() for name, ema in self.extra_emas.items()},
                )
            except (OSError, SafetensorError) as exc:  # disk full, folder removed: the write was atomic, the old file stands
                reason = getattr(exc, "strerror", None) or str(exc).splitlines()[0][:120]
                kept = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else "no checkpoint was written before"
                raise CheckpointWriteError(f"could not write the checkpoint of step {self.step} into {self.run_dir} ({reason}); {kept}; "
                                           "free space there and continue with --resume latest") from None
            self.last_checkpoint = path
        self.accelerator.wait_for_everyone()
        return path

    def sampler(self) -> Sampler:
        """A Sampler around the EMA (or raw) weights as they are now."""
        net = self.ema.module if self.ema is not None else self.model
        return Sampler(net, self.record, device=self.accelerator.device, step=self.step, codec=self.codec)

    def sample_grid(self) -> Path | None:
        """Main process draws the run's preview grid at this step with the EMA (or raw) weights: the objective entry's
        `preview` (samples on the fixed seed; an autoencoder's reconstructions of the first training images)."""
        self._ensure_finite()
        if not self.is_main:
            return None
        s = self.cfg.sample
        (self.run_dir / "samples").mkdir(exist_ok=True)
        out = self.run_dir / "samples" / f"step-{self.step:08d}.png"
        net = self.ema.module if self.ema is not None else self.model
        preview = Preview(net, self.data, s.num_images, s.seed, lambda num, seed: self.sampler().sample(num, seed=seed).grid_png())
        atomic_write_bytes(out, self.resolved.entry.preview(preview))
        return out

    # --- one step ---------------------------------------------------------------------------
    def global_batch(self, step: int) -> GlobalBatch:
        """Data rows, times, noise, label-drop and flip masks of the whole global batch of `step`."""
        return draw_global_batch(step, seed=self.cfg.run.seed, schedule=self.batches, image_shape=self.spec.shape,
                                 draw_times=self.objective.draw_times, label_dropout=self.cfg.flow.label_dropout,
                                 device=self.accelerator.device)

    def micro_batch(self, batch: GlobalBatch, m: int) -> MicroBatch:
        """This process's part m of the global batch."""
        rows = micro_batch_rows(m, self.world, self.rank, self.micro)
        return assemble_micro_batch(batch, rows, self.data, hflip=self.cfg.data.hflip, null_label=self.null_label,
                                    channels_last=self.cfg.train.channels_last, device=self.accelerator.device)

    def train_step(self, window: LogWindow) -> None:
        """One optimiser step over the global batch; its loss and gradient norm stay on the device in `window`."""
        acc, train = self.accelerator, self.cfg.train
        torch.manual_seed(derive_seed(self.cfg.run.seed, "dropout", self.step, self.rank))
        with record_function("step/draw_batch"):
            batch = self.global_batch(self.step)
        losses: list[tuple[Tensor, Tensor]] = []
        for m in range(self.grad_accum):
            with record_function("step/draw_batch"):
                micro = self.micro_batch(batch, m)
            ctx = acc.no_sync(self.prepared) if m < self.grad_accum - 1 else nullcontext()
            with ctx:
                with record_function("step/forward_loss"):
                    per_sample, logged, *parts = self.objective.per_sample_loss(self.training_model, micro)
                    loss = per_sample.mean()
                with record_function("step/backward"):
                    acc.backward(loss / self.grad_accum)
            losses.append((logged, micro.times, parts[0] if parts else None))
        bad = ~torch.stack([torch.isfinite(v).all() for v, _, _ in losses]).all()
        if train.on_nonfinite == "skip" and self._any_process(bad):  # "skip" reads the device every step (documented)
            acc.print(f"warning: non-finite loss in step {self.step + 1}; skipped the update on every process (train.on_nonfinite = 'skip')")
            self.optimizer.zero_grad(set_to_none=True)
            return
        for per_sample, times, parts in losses:
            window.add(per_sample, times, parts)
        self._first_bad = torch.where((self._first_bad < 0) & bad, torch.full_like(self._first_bad, self.step), self._first_bad)
        with record_function("step/clip_optimizer"):
            if train.grad_clip > 0:
                window.grad_norm_sum += acc.clip_grad_norm_(self.prepared.parameters(), train.grad_clip).detach().float()
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None or self.extra_emas:
            with record_function("step/ema"):
                for ema in ([self.ema] if self.ema is not None else []) + list(self.extra_emas.values()):
                    ema.update(self.model)

    # --- reading the device -------------------------------------------------------------------
    def _any_process(self, flag: Tensor) -> bool:
        """Whether `flag` is true on any process: one collective, so every replica takes the same branch.

        The gradients were averaged across processes already, so one process's NaN reaches them all; a process
        that decided alone from its own loss would apply NaN-scaled gradients while another skipped.
        """
        if self.world > 1:
            flag = self.accelerator.reduce(flag.float().reshape(1), reduction="sum") > 0
        return bool(flag)

    def _gather_min(self, value: Tensor) -> Tensor:
        if self.world == 1:
            return value
        from accelerate.utils import gather

        values = gather(value.reshape(1))
        values = torch.where(values < 0, torch.full_like(values, torch.iinfo(torch.long).max), values)
        least = values.min()
        return torch.where(least == torch.iinfo(torch.long).max, torch.full_like(least, -1), least)

    def _ensure_finite(self, first_bad: int | None = None) -> None:
        """Raise NonFiniteLossError, naming the first bad step, if any step so far had a non-finite loss.

        first_bad: the value when the caller has already read it; otherwise this reads it (once per step).
        """
        if self.cfg.train.on_nonfinite == "skip":
            return
        if first_bad is None:
            if self._checked_at == self.step:
                return
            first_bad = int(self._gather_min(self._first_bad).item())
        self._checked_at = self.step
        if first_bad >= 0:
            kept = f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else "; no checkpoint was written yet"
            raise NonFiniteLossError(f"non-finite loss in step {first_bad + 1}{kept}; nothing after it was saved "
                                     "(lower train.lr, or set train.on_nonfinite = 'skip')")

    def _log(self, window: LogWindow, log: MetricsLog | None) -> dict[str, Any]:
        """Read the window and the non-finite guard in one device read (one collective across processes), log it."""
        packed = window.packed()
        if self.world > 1:
            packed = self.accelerator.reduce(packed, reduction="sum")
        first_bad = self._gather_min(self._first_bad).double().reshape(1)
        values = torch.cat([packed.double(), first_bad]).tolist()  # the one host read of this window
        self._ensure_finite(int(values[-1]))
        now = time.perf_counter()
        loss_sum, grad_sum = values[0], values[1] / self.world
        bins, counts = values[2 : 2 + TIME_BINS], values[2 + TIME_BINS : 2 + 2 * TIME_BINS]
        n = max(window.samples * self.world, 1)
        record: dict[str, Any] = {
            "step": self.step,
            "loss": loss_sum / n,
            **{name: v / n for name, v in zip(window.parts, values[2 + 2 * TIME_BINS : 2 + 2 * TIME_BINS + len(window.parts)])},
            "lr": self.scheduler.get_last_lr()[0],
            "images_per_s": window.steps * self.cfg.train.batch_size / (now - window.t0),
            "elapsed_s": now - self._loop_start,
        }
        if self.resolved.entry.logs_time:  # an autoencoder's loss has no time
            record["loss_by_t"] = [s / c if c else None for s, c in zip(bins, counts)]
        if self.cfg.train.grad_clip > 0:
            record["grad_norm"] = grad_sum / window.steps
        if log is not None:
            log.write(record)
        self.accelerator.log(scalar_metrics(record, TIME_BINS), step=self.step)
        return record

    def _stop_flags(self, stop: StopRequests, start: float, at_read: bool) -> tuple[str | None, bool]:
        """(signal that asks to stop, time budget exhausted), agreed by all processes.

        One process decides every step from host facts; several agree only at the log reads.
        """
        minutes = self.cfg.train.max_minutes
        budget = minutes > 0 and time.perf_counter() - start + self.budget_spent >= 60.0 * minutes
        if self.world == 1:
            return stop.requested, budget
        if not at_read:
            return None, False
        from accelerate.utils import gather

        flags = gather(torch.tensor([[float(stop.requested is not None), float(budget)]], device=self.accelerator.device))
        flags = flags.reshape(self.world, 2).tolist()
        signal_name = stop.requested or ("SIGTERM" if any(f[0] for f in flags) else None)
        return signal_name, bool(flags[0][1])  # the main process's clock decides the budget

    # --- the loop -----------------------------------------------------------------------------
    def run(self, progress: bool = True) -> TrainResult:
        try:
            with StopRequests() as stop:
                return self._loop(stop, progress)
        finally:
            if self.lock is not None:
                self.lock.release()

    def _loop(self, stop: StopRequests, progress: bool) -> TrainResult:
        cfg, train, acc = self.cfg, self.cfg.train, self.accelerator
        log = None
        if self.is_main:
            atomic_write_bytes(self.run_dir / "config.json", cfg.to_json().encode())
            log = MetricsLog(self.run_dir, resume_step=self.step)
            if "path" in self.data.info:
                info = self.data.info
                acc.print(f"data: {info['path']} ({len(self.data)} training images; {info['ignored_files']} non-image files ignored, "
                          f"{info['skipped_bad_images']} unreadable images skipped; cache {info['cache']})")
            if self.codec is not None:
                acc.print(f"latents: {cfg.data.autoencoder} encodes {self.codec.image_spec.shape} images to {self.spec.shape} "
                          f"(shift {self.codec.shift:.4g}, scale {self.codec.scale:.4g}; cache {self.data.info.get('latent_cache')})")
            acc.print(
                f"training {cfg.model.arch} ({count_parameters(self.model):,} parameters) on {self.spec.dataset} "
                f"[{len(self.data)} {'latents' if self.codec is not None else 'images'} of {self.spec.shape}, {self.spec.num_classes} classes] | "
                f"{self.world} process(es) on {self.nodes} node(s), "
                f"device {acc.device}, mixed precision {acc.mixed_precision} | global batch {train.batch_size} = "
                f"{self.world} x {self.grad_accum} x {self.micro} | from step {self.step} to {train.steps}"
            )
        if acc.log_with:
            acc.init_trackers(cfg.run.name, config=flat_config(cfg.to_dict()),
                              init_kwargs={"tensorboard": {"purge_step": self.step or None}})
        bar = progress_bar(total=train.steps, initial=self.step, enabled=self.is_main and progress, dynamic_ncols=True, file=sys.stdout)
        start = self._loop_start = time.perf_counter()
        window = LogWindow(acc.device, self.log_parts)
        stopped_by = "steps"
        self.prepared.train()
        try:
            while self.step < train.steps:
                self.train_step(window)
                self.step += 1
                window.steps += 1
                bar.update(1)
                at_read = self.step % train.log_every == 0 or self.step == train.steps
                if at_read:
                    record = self._log(window, log)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", img_s=f"{record['images_per_s']:.0f}")
                    window = LogWindow(acc.device, self.log_parts)
                signal_name, budget_hit = self._stop_flags(stop, start, at_read)
                if (signal_name or budget_hit) and not at_read:  # the last, partial window goes into the log too
                    self._log(window, log)
                    window = LogWindow(acc.device, self.log_parts)
                if self.step % train.checkpoint_every == 0 or self.step == train.steps or budget_hit or signal_name:
                    self.save()
                if train.sample_every and (self.step % train.sample_every == 0 or self.step == train.steps or budget_hit):
                    self.sample_grid()
                if signal_name:
                    raise TrainingInterrupted(signal_name, self.step, self.last_checkpoint)
                if budget_hit:
                    stopped_by = "time"
                    break
        finally:
            bar.close()
            if log is not None:
                log.close()
            if acc.log_with:
                acc.end_training()
        return TrainResult(self.run_dir, self.step, self.last_checkpoint, stopped_by)


def _has_accelerator_device() -> bool:
    from imgflow.devices import default_device

    return default_device().type != "cpu"


def train(cfg: RunConfig, resume: str | None = None, data: ImageData | None = None, progress: bool = True) -> TrainResult:
    """Train the run described by cfg (resuming from 'latest', a run folder or a checkpoint file if given)."""
    return Trainer(cfg, resume=resume, data=data, progress=progress).run(progress=progress)
