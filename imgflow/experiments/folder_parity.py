"""Real-data checks of the folder path: the cost of building its cache, and parity with the built-in loader.

`folder_cache_benchmark` writes a labelled dataset out as a class-per-folder tree of PNGs and times
the first start (listing the files and converting every image into the cache) and the second
start (listing the files and mapping the cache). `folder_parity` trains the same config on the
folder and on the built-in loader's tensors and compares the loss curves: the pixels are the
same, so they must be identical.

A class-per-folder tree lists its images class by class, so the built-in data is put in that order
(a stable sort by label: within a class the export keeps the dataset's order) before training;
this is the only difference between the two runs, and `folder_parity` checks that the pixels and
labels it then trains on are equal.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from imgflow.config import RunConfig
from imgflow.data import ImageData, export_image_folder, load_dataset, scan_folder
from imgflow.data.folder import available_cores


@dataclass
class CacheBenchmark:
    images: int
    image_size: int
    channels: int
    workers: int
    write_pngs_s: float
    first_start_s: float  # scan + convert every image + map the cache
    second_start_s: float  # scan + check the cache + map it
    scan_s: float  # listing and stat of the files alone
    cache_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def folder_config(cfg: RunConfig, path: str | Path, cache_dir: str | Path, channels: int) -> RunConfig:
    """cfg with its [data] section pointed at a folder (no hold-out, the run's image size)."""
    out = copy.deepcopy(cfg)
    out.data.dataset, out.data.hflip = "folder", False
    o = out.data.folder
    o.path, o.cache_dir, o.channels, o.holdout_fraction, o.fit = str(path), str(cache_dir), channels, 0.0, "crop"
    return out


def in_folder_order(data: ImageData) -> ImageData:
    """The rows of a labelled dataset in the order a class-per-folder export lists them (stable sort by label)."""
    order = torch.sort(data.labels, stable=True).indices
    return ImageData(data.images[order], data.labels[order], data.spec)


def folder_cache_benchmark(source: ImageData, workdir: str | Path, cfg: RunConfig, *, workers: int = 0, progress: bool = True,
                           log: Callable[[str], None] | None = None) -> CacheBenchmark:
    """Export `source` as PNGs under workdir, then time the folder dataset's first and second start under cfg's [data]."""
    say = log or (lambda _m: None)
    workdir = Path(workdir)
    pngs, cache = workdir / "pngs", workdir / "cache"
    for old in (pngs, cache):
        shutil.rmtree(old, ignore_errors=True)
    t0 = time.perf_counter()
    export_image_folder(source, pngs, progress=progress)
    write_s = time.perf_counter() - t0
    say(f"wrote {len(source)} PNGs in {write_s:.1f} s")
    folder_cfg = folder_config(cfg, pngs, cache, source.spec.channels)
    folder_cfg.data.folder.workers = workers
    t0 = time.perf_counter()
    first = load_dataset(folder_cfg.data, progress=progress)
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    second = load_dataset(folder_cfg.data)
    second_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    scan_folder(pngs)
    scan_s = time.perf_counter() - t0
    assert len(first) == len(second) == len(source)
    size = sum(p.stat().st_size for p in cache.rglob("*") if p.is_file())
    return CacheBenchmark(len(source), folder_cfg.data.image_size, source.spec.channels, workers or available_cores(), write_s,
                          first_s, second_s, scan_s, size)


@dataclass
class ParityReport:
    steps: int
    same_pixels: bool
    same_labels: bool
    identical_loss_curves: bool
    max_abs_loss_difference: float
    losses_builtin: list[float] = field(default_factory=list)
    losses_folder: list[float] = field(default_factory=list)
    seconds_builtin: float = 0.0
    seconds_folder: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def folder_parity(cfg: RunConfig, builtin: ImageData, png_folder: str | Path, workdir: str | Path, *, steps: int = 300,
                  progress: bool = True, log: Callable[[str], None] | None = None) -> ParityReport:
    """Train cfg for `steps` on the built-in tensors (in folder order) and on the PNG folder; compare the curves."""
    from imgflow.training.metrics_log import read_metrics
    from imgflow.training.trainer import Trainer

    say = log or (lambda _m: None)
    workdir = Path(workdir)
    runs = {"builtin": workdir / "run-builtin", "folder": workdir / "run-folder"}
    for run in runs.values():
        shutil.rmtree(run, ignore_errors=True)
    base = copy.deepcopy(cfg)
    base.train.steps, base.train.sample_every, base.train.checkpoint_every, base.train.max_minutes = steps, 0, steps, 0.0
    base.train.log_every = min(base.train.log_every, 10)
    ordered = in_folder_order(builtin)
    folder_cfg = folder_config(base, png_folder, workdir / "cache", builtin.spec.channels)
    folder_data = load_dataset(folder_cfg.data)
    same_pixels = torch.equal(folder_data.images, ordered.images)
    same_labels = torch.equal(folder_data.labels, ordered.labels)
    seconds = {}
    for name, run_cfg, data in (("builtin", base, ordered), ("folder", folder_cfg, None)):
        run_cfg = copy.deepcopy(run_cfg)
        run_cfg.run.output_dir = str(runs[name])
        say(f"training {steps} steps on the {name} data")
        t0 = time.perf_counter()
        Trainer(run_cfg, data=data).run(progress=progress)
        seconds[name] = time.perf_counter() - t0
    a = [m["loss"] for m in read_metrics(runs["builtin"])]
    b = [m["loss"] for m in read_metrics(runs["folder"])]
    diff = max((abs(x - y) for x, y in zip(a, b)), default=float("nan"))
    return ParityReport(steps, same_pixels, same_labels, a == b and len(a) > 0, diff, a, b, seconds["builtin"], seconds["folder"])
