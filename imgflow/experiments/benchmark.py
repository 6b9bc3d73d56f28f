"""Throughput of the image pipeline on this machine: training steps and sampling.

Training: images/s of the real training step (data indexing, noise, forward, backward,
clipping, Adam, EMA: `Trainer.train_step`) for a config, over batch sizes, in fp32 and bf16
autocast (accelerate's mixed precision), with channels-last and torch.compile as options.
Sampling: images/s of the config's own sampler at a given NFE (with guidance when the model is
class-conditional). Random weights and data: throughput does not depend on them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from imgflow.config import ConfigError, RunConfig, load_config
from imgflow.data import DataSpec, ImageData, dataset_spec

#: the repository's configs folder (a checkout or an editable install)
CONFIGS = Path(__file__).resolve().parents[2] / "configs"
#: benchmarks run on random pixels; a folder recipe's empty data.folder.path only needs a stand-in
RANDOM_DATA = {"data.folder.path": "(random pixels)"}


def _random_data(config: Path) -> dict[str, Any]:
    """The override that lets a folder config load without its folder (the benchmark feeds random pixels); {} otherwise."""
    import tomllib

    with open(config, "rb") as fh:
        dataset = tomllib.load(fh).get("data", {}).get("dataset")
    return RANDOM_DATA if dataset == "folder" else {}


def resolve_config(name: str | Path) -> Path:
    """A TOML path, or the name of a shipped config (configs/<name>.toml)."""
    path = Path(name)
    if path.is_file():
        return path
    shipped = CONFIGS / f"{name}.toml"
    if shipped.is_file():
        return shipped
    raise ConfigError(f"no config {name!r}: pass a TOML file or one of {', '.join(sorted(p.stem for p in CONFIGS.glob('*.toml')))}")


def fake_data(cfg: RunConfig, n: int) -> ImageData:
    """n random uint8 images of the config's data shape, with ten classes (a folder's shape comes from its config)."""
    try:
        spec = dataset_spec(cfg.data)
    except ValueError:
        spec = DataSpec(cfg.data.dataset, getattr(cfg.data.options, "image_channels", 3), cfg.data.image_size, tuple(str(i) for i in range(10)))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, *spec.shape), generator=g, dtype=torch.uint8)
    return ImageData(images, torch.arange(n) % max(spec.num_classes, 1), spec)


def make_trainer(config: str | Path, batch: int, precision: str, channels_last: bool, compile_: bool, workdir: Path,
                 overrides: dict[str, Any] | None = None):
    """A Trainer of the config on fake data, with accelerate's mixed precision `precision` (fp32, bf16, fp16)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from imgflow.training.trainer import Trainer

    AcceleratorState._reset_state(reset_partial_state=True)
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no" if precision == "fp32" else precision)
    tag = f"{Path(config).stem}-{batch}-{precision}-{channels_last}-{compile_}-{len(list(workdir.iterdir()))}"
    path = resolve_config(config)
    cfg = load_config(path, {
        **_random_data(path), **(overrides or {}), "run.output_dir": str(workdir / tag), "train.batch_size": batch,
        "train.channels_last": channels_last, "train.compile": compile_, "train.sample_every": 0, "train.grad_accum": 1,
    })
    return Trainer(cfg, data=fake_data(cfg, max(batch, 256)), accelerator=acc)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_training(trainer, warmup: int, repeats: int) -> list[float]:
    """Seconds of each of `repeats` training steps after `warmup` untimed ones."""
    from imgflow.training.trainer import LogWindow

    window = LogWindow(trainer.accelerator.device)
    for _ in range(warmup):
        trainer.train_step(window)
    times = []
    for _ in range(repeats):
        _sync(trainer.accelerator.device)
        t0 = time.perf_counter()
        trainer.train_step(window)
        _sync(trainer.accelerator.device)
        times.append(time.perf_counter() - t0)
    return times


def profile_training(trainer, steps: int) -> tuple[list[dict], str]:
    """Share of a training step spent in each phase (the trainer's `step/*` labels), and the top operators."""
    from torch.profiler import ProfilerActivity, profile

    from imgflow.training.trainer import LogWindow

    window = LogWindow(trainer.accelerator.device)
    for _ in range(2):
        trainer.train_step(window)
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(window)
    wall_us = (time.perf_counter() - t0) * 1e6
    events = prof.key_averages()
    phases = [{"phase": e.key, "ms_per_step": e.cpu_time_total / steps / 1000, "share": e.cpu_time_total / wall_us}
              for e in events if e.key.startswith("step/")]
    phases.sort(key=lambda r: -r["ms_per_step"])
    return phases, events.table(sort_by="self_cpu_time_total", row_limit=12)


def time_sampling(config: str | Path, num_images: int, nfe: int, overrides: dict[str, Any] | None = None) -> float:
    """Images/s of the config's sampler at `nfe` evaluations (guidance 2 when conditional), random weights."""
    from imgflow.core import solver_info
    from imgflow.resolved_run import resolve_run
    from imgflow.sampler import Sampler

    path = resolve_config(config)
    cfg = load_config(path, {**_random_data(path), **(overrides or {})})
    run = resolve_run(cfg, data=fake_data(cfg, max(cfg.train.batch_size, 64)))  # a latent model's data: fake pixels, encoded
    for p in run.network.parameters():  # the zero-initialised output layers would make the work trivial
        torch.nn.init.normal_(p, std=0.02)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sampler = Sampler(run.network, run.record, device=device, codec=run.codec)
    guidance = 2.0 if sampler.conditional else 1.0
    steps = max(nfe // (solver_info(cfg.sample.solver).evals_per_step or 1), 1)
    sampler.sample(min(num_images, 8), guidance=guidance, steps=steps, batch_size=num_images)  # warm-up
    t0 = time.perf_counter()
    sampler.sample(num_images, guidance=guidance, steps=steps, batch_size=num_images)
    return num_images / (time.perf_counter() - t0)


def _is_autoencoder(config: str | Path) -> bool:
    from imgflow.nn.backbones import backbone

    path = resolve_config(config)
    return backbone(load_config(path, _random_data(path)).model.arch).kind == "autoencoder"


def machine_info() -> dict[str, Any]:
    flags = ""
    with contextlib.suppress(OSError):
        flags = next((line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")), "")
    marks = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "cpu_flags": marks,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def benchmark_images(configs: Sequence[str], batches: Sequence[int], precisions: Sequence[str] = ("fp32",),
                     channels_last: Sequence[bool] = (False,), compile_: Sequence[bool] = (False,), warmup: int = 2, repeats: int = 5,
                     sample_nfe: int = 20, sample_images: int = 100, overrides: dict[str, Any] | None = None,
                     log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Rows of training throughput (every combination) and sampling throughput (per config)."""
    rows: list[dict[str, Any]] = []
    say = log or (lambda _m: None)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for config in configs:
            for batch in batches:
                for precision in precisions:
                    for cl in channels_last:
                        for comp in compile_:
                            trainer = make_trainer(config, batch, precision, cl, comp, work, overrides)
                            med = statistics.median(time_training(trainer, warmup, repeats))
                            rows.append({"kind": "train", "config": str(config), "batch": batch, "precision": precision,
                                         "channels_last": cl, "compile": comp, "step_s": med, "images_per_s": batch / med,
                                         "parameters": sum(q.numel() for q in trainer.model.parameters())})
                            trainer.lock.release()
                            say(f"train {config} batch {batch} {precision} cl={cl} compile={comp}: {med * 1000:.1f} ms/step "
                                f"{batch / med:.1f} img/s")
            if sample_nfe and not _is_autoencoder(config):  # an autoencoder does not sample
                rate = time_sampling(config, sample_images, sample_nfe, overrides)
                rows.append({"kind": "sample", "config": str(config), "nfe": sample_nfe, "images": sample_images, "images_per_s": rate})
                say(f"sample {config}: {sample_images} images, NFE {sample_nfe}: {rate:.1f} img/s")
    return rows


def format_tables(rows: Sequence[dict[str, Any]]) -> str:
    lines = ["| config | params | batch | precision | channels-last | compile | ms/step | images/s |",
             "|---|---:|---:|---|---|---|---:|---:|"]
    lines += [f"| {r['config']} | {r['parameters']:,} | {r['batch']} | {r['precision']} | {r['channels_last']} | {r['compile']} | "
              f"{r['step_s'] * 1000:.0f} | {r['images_per_s']:.1f} |" for r in rows if r["kind"] == "train"]
    sampling = [r for r in rows if r["kind"] == "sample"]
    if sampling:
        lines += ["", "| config | NFE | images | images/s |", "|---|---:|---:|---:|"]
        lines += [f"| {r['config']} | {r['nfe']} | {r['images']} | {r['images_per_s']:.1f} |" for r in sampling]
    return "\n".join(lines)
