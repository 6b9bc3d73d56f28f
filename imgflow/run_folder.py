"""The run folder: checks before anything is written, the lock that keeps two runs apart, resume rules.

A run folder holds one run's checkpoints (`imgflow.checkpoint`), `config.json`, `metrics.jsonl`,
sample grids and `.lock`. Everything that can be wrong with a folder is checked before a byte
is written there; a live run holds an exclusive `flock` on `.lock` for as long as it trains.
The kernel drops that lock when the process ends however it ends (SIGKILL included), so a
lock left by a dead run never blocks a resume.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

from imgflow.checkpoint import Checkpoint, CheckpointError, list_checkpoints, load_checkpoint
from imgflow.config import ConfigError, RunConfig, flatten_tables
from imgflow.data import DataSpec
from imgflow.file_locks import describe_holder, take_lock

LOCK_NAME = ".lock"

#: config sections whose change makes a checkpoint unusable for resuming
FROZEN_SECTIONS = ("data", "model", "flow")


class RunFolderBusy(ConfigError):
    """Another live process trains into this run folder."""


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


def check_resume_compatible(ckpt: Checkpoint, cfg: RunConfig, spec: DataSpec | None = None) -> None:
    """The checkpoint's data/model/flow sections, and the data it was trained on, must be the run's.

    The checkpoint's training config is read strictly here (the only place it is): one that this
    version no longer accepts cannot be resumed, only sampled from.
    """
    from imgflow.data import dataset_entry

    old, new = ckpt.training_config().to_dict(), cfg.to_dict()
    # where the data lives, not what it is (a latent run's autoencoder is compared by its weights below)
    where_only = set(dataset_entry(cfg.data.dataset).location_keys) | {"autoencoder", "latent_cache_dir"}
    for section in FROZEN_SECTIONS:
        old_keys, new_keys = dict(flatten_tables(old[section])), dict(flatten_tables(new[section]))
        for key, value in new_keys.items():
            if section == "data" and key in where_only:
                continue
            if old_keys.get(key, value) != value:
                raise CheckpointError(
                    f"cannot resume from {ckpt.path}: it was trained with {section}.{key} = {old_keys.get(key)!r}, "
                    f"this run has {value!r}; use the same setting or start a new run.output_dir"
                )
    old_batch = old["train"].get("batch_size", cfg.train.batch_size)
    if old_batch != cfg.train.batch_size:  # the batches are a function of (seed, step) over global rows of this size
        raise CheckpointError(f"cannot resume from {ckpt.path}: its global batch was train.batch_size = {old_batch}, this run has "
                              f"{cfg.train.batch_size}, so the same steps would draw other batches; resume with {old_batch} (any process "
                              "count: set train.micro_batch for the per-process size) or start a new run.output_dir")
    if bool(old["data"].get("autoencoder")) != bool(cfg.data.autoencoder):
        raise CheckpointError(f"cannot resume from {ckpt.path}: it was trained on {'latents' if old['data'].get('autoencoder') else 'pixels'}, "
                              f"this run asks for {'latents' if cfg.data.autoencoder else 'pixels'}; use the run's own data.autoencoder "
                              "or start a new run.output_dir")
    if spec is None or ckpt.spec is None:
        return
    if ckpt.spec.extra.get("autoencoder_digest") != spec.extra.get("autoencoder_digest"):
        raise CheckpointError(f"cannot resume from {ckpt.path}: the autoencoder at data.autoencoder = {cfg.data.autoencoder} is not the one "
                              "this run was trained on (it was retrained or replaced); resuming needs the same autoencoder, so restore "
                              "its checkpoint or start a new run.output_dir")
    if ckpt.spec.fingerprint != spec.fingerprint:
        raise CheckpointError(
            f"cannot resume from {ckpt.path}: the images under {getattr(cfg.data.options, 'path', None) or cfg.data.dataset} changed "
            "since the run started "
            "(files added, removed or modified); resuming needs the data it was trained on, so restore it or start a new run.output_dir"
        )
    if (ckpt.spec.shape, ckpt.spec.class_names) != (spec.shape, spec.class_names):
        raise CheckpointError(
            f"cannot resume from {ckpt.path}: it was trained on {ckpt.spec.num_classes} classes of {ckpt.spec.shape} images, "
            f"this data has {spec.num_classes} classes of {spec.shape}; use the run's own data or start a new run.output_dir"
        )


class RunLock:
    """An exclusive, non-blocking flock on <run_dir>/.lock for the life of a run.

    `probe(run_dir)` checks without creating anything (for the checks that run before any
    write); `acquire()` creates the file if needed, takes the lock and records who holds it.
    """

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_NAME
        self._fh: IO[str] | None = None

    @staticmethod
    def probe(run_dir: Path) -> None:
        """Raise RunFolderBusy if a live process holds the lock; create nothing."""
        path = Path(run_dir) / LOCK_NAME
        if not path.is_file():
            return
        try:
            fh = open(path)  # noqa: SIM115 - held only for the probe
        except OSError:
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(_busy_message(path)) from None
        finally:
            fh.close()  # closing releases a lock the probe may have taken

    def acquire(self) -> RunLock:
        fh = open(self.path, "a+")  # noqa: SIM115 - the lock lives as long as the run
        if not take_lock(fh, wait=False):
            fh.close()
            raise RunFolderBusy(_busy_message(self.path))
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _busy_message(path: Path) -> str:
    return (f"run folder {path.parent} is in use by {describe_holder(path)}; wait for that run to finish "
            "(or stop it) before resuming, or choose another run.output_dir")


def checkpoint_to_resume(cfg: RunConfig, resume: str | None, check_lock: bool = True) -> Checkpoint | None:
    """The checkpoint a run continues from, after the checks that need no writes.

    resume: None (a fresh run), "latest" (the folder's newest checkpoint), a run folder or checkpoint file, or "auto":
    "latest" when the folder holds a checkpoint and a fresh run when it holds none, so the same command starts a run and
    continues it after a crash or a restart (`torchrun --max-restarts`). Any resume still refuses a folder whose
    config differs. A fresh run into a folder that already holds checkpoints is refused (it would interleave
    two runs); so is any start into a folder another live process trains into (check_lock:
    the main process checks; the other processes of the same run would see its lock).
    """
    run_dir = Path(cfg.run.output_dir)
    if check_lock:
        RunLock.probe(run_dir)
    if resume == "auto":  # the way to run under torchrun --max-restarts or a requeueing scheduler
        resume = "latest" if list_checkpoints(run_dir) else None
    if resume:
        ckpt = load_checkpoint(resume, run_dir)
        check_resume_compatible(ckpt, cfg)
        return ckpt
    if list_checkpoints(run_dir):
        raise ConfigError(
            f"run.output_dir {run_dir} already holds checkpoints; pass --resume latest to continue it or choose another run.output_dir"
        )
    return None
