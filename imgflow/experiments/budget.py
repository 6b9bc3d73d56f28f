"""Fixed wall-clock budget comparison of training recipes: `budget_comparison(...) -> BudgetReport`.

Each run trains from scratch for the first budget of wall clock (train.max_minutes; the clock
starts at the first step), is judged, then resumes for the difference to the next budget, and so
on: resume is exact and the learning rate is constant after warm-up, so the state at 15 minutes
of a 30-minute run is what a 15-minute run ends with. At every budget and NFE it draws `num`
class-balanced samples with per-sample seeds (the run's guidance scale and solver; steps = NFE /
evaluations per step) and reports FID(clf) against the classifier's held-out split and class
accuracy, with a grid. Samples of a model trained at another size than the classifier's are
resized to it with antialiasing; real images sent through the same round trip give that run's floor.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from imgflow.config import ConfigError, RunConfig, load_config
from imgflow.core import solver_info
from imgflow.data import dataset_spec, load_dataset, to_unit_range
from imgflow.evaluation.judge import Judge
from imgflow.files import atomic_write_bytes, write_json
from imgflow.grids import image_grid_png
from imgflow.sampler import Sampler
from imgflow.training.metrics_log import read_metrics
from imgflow.training.trainer import Trainer


@dataclass
class BudgetRow:
    minutes: float
    nfe: int
    solver: str
    steps: int
    time_grid: str
    guidance: float
    fid: float
    class_accuracy: float | None
    sampling_seconds: float
    grid: str


@dataclass
class BudgetRun:
    name: str
    config: str
    train_steps: dict[str, int] = field(default_factory=dict)  # budget (minutes) -> optimiser steps reached
    final_loss: dict[str, float | None] = field(default_factory=dict)
    fid_floor_resized: float | None = None  # real images through the model-size round trip
    rows: list[BudgetRow] = field(default_factory=list)


@dataclass
class BudgetReport:
    minutes: list[float]
    num_samples: int
    classifier: str
    fid_floor_real_images: float
    runs: list[BudgetRun] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self, batch_sizes: dict[str, int] | None = None) -> str:
        lines = [f"# Fixed wall-clock budgets ({self.num_samples} samples per row; real-image floor FID(clf) "
                 f"{self.fid_floor_real_images:.3f})", "",
                 "| run | minutes | steps | NFE | sampler | FID(clf) | class acc |", "|---|---:|---:|---:|---|---:|---:|"]
        for run in self.runs:
            for r in run.rows:
                acc = f"{r.class_accuracy:.4f}" if r.class_accuracy is not None else "-"
                lines.append(f"| {run.name} | {r.minutes:g} | {run.train_steps.get(f'{r.minutes:g}', 0)} | {r.nfe} | "
                             f"{r.solver} x{r.steps} {r.time_grid}, w={r.guidance:g} | {r.fid:.3f} | {acc} |")
        return "\n".join(lines) + "\n"


def to_size(images: torch.Tensor, size: int) -> torch.Tensor:
    """[-1, 1] images resized (antialiased bilinear) to size x size."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)


def budget_comparison(
    runs: dict[str, str | Path],
    classifier: str | Path,
    out_dir: str | Path,
    *,
    minutes: Sequence[float] = (15.0,),
    nfes: Sequence[int] = (10, 20, 50, 100),
    num: int = 1000,
    overrides: dict[str, Any] | None = None,
    skip_train: bool = False,
    log: Callable[[str], None] | None = None,
) -> BudgetReport:
    """Train each config (name -> TOML path) for each budget in `minutes` (cumulative), judge it at every NFE.

    overrides: config keys for every run (e.g. {"data.data_root": "../shared/data"}).
    Writes <out_dir>/<name>/ (the run and its grids), results.json and results.md.
    """
    say = log or print
    minutes = sorted(float(m) for m in minutes)
    if not runs or not minutes or minutes[0] <= 0 or num < 2:
        raise ConfigError("give at least one run, budgets > 0 minutes and num >= 2")
    out_dir = Path(out_dir)
    configs: dict[str, RunConfig] = {}
    for name, path in runs.items():
        configs[name] = load_config(path, {**(overrides or {}), "run.output_dir": str(out_dir / name), "train.steps": 10**9,
                                           "train.sample_every": 0, "train.checkpoint_every": 10**9})
    first = next(iter(configs.values()))
    judge = _classifier_judge(classifier, first, say)
    report = BudgetReport(list(minutes), num, str(classifier), judge.real_floor(num))
    say(f"real training images ({num}) vs {judge.describe_reference()['split']}: FID(clf) {report.fid_floor_real_images:.3f}")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, cfg in configs.items():
        run = BudgetRun(name, str(runs[name]))
        report.runs.append(run)
        if cfg.data.image_size != judge.spec.image_size:
            run.fid_floor_resized = _round_trip_floor(judge, cfg, num)
            say(f"[{name}] real images through the {judge.spec.image_size}->{cfg.data.image_size}->{judge.spec.image_size} round "
                f"trip: FID(clf) {run.fid_floor_resized:.3f}")
        done = 0.0
        for budget in minutes:
            if not skip_train:
                step_cfg = copy.deepcopy(cfg)
                step_cfg.train.max_minutes = budget - done
                say(f"[{name}] training to {budget:g} minutes ({budget - done:g} more)")
                Trainer(step_cfg, resume="latest" if done > 0 else None).run(progress=False)
            done = budget
            metrics = read_metrics(out_dir / name)
            sampler = Sampler.from_checkpoint(out_dir / name, device="cpu")
            run.train_steps[f"{budget:g}"] = sampler.step or 0
            run.final_loss[f"{budget:g}"] = metrics[-1]["loss"] if metrics else None
            run.rows += _judge_at_nfes(sampler, judge, budget, nfes, num, out_dir / name, name, say)
            write_json(out_dir / "results.json", report.to_dict())
    atomic_write_bytes(out_dir / "results.md", report.markdown().encode())
    return report


def _classifier_judge(classifier: str | Path, cfg: RunConfig, say: Callable[[str], None]) -> Judge:
    """The judge of the classifier's own data: the runs' dataset at the classifier's image size."""
    from imgflow.evaluation.classifier import load_classifier

    _, info = load_classifier(classifier)
    data = copy.deepcopy(cfg.data)
    data.image_size, data.resize = info.image_size, info.identity.get("resize") == "True"
    return Judge.load(classifier, data, dataset_spec(data), log=say)


def _round_trip_floor(judge: Judge, cfg: RunConfig, num: int) -> float:
    real = load_dataset(cfg.data, "train").images
    idx = torch.randperm(real.shape[0], generator=torch.Generator().manual_seed(0))[:num]
    return judge.fid_of(to_size(to_unit_range(real[idx]), judge.spec.image_size))


def _judge_at_nfes(sampler: Sampler, judge: Judge, budget: float, nfes: Sequence[int], num: int, run_dir: Path, name: str,
                   say: Callable[[str], None]) -> list[BudgetRow]:
    rows = []
    default = sampler.defaults
    per = solver_info(default.solver).evals_per_step or 1
    for nfe in nfes:
        if nfe % per:
            continue
        samples = sampler.sample(num, steps=nfe // per, seed=0)
        images = to_size(samples.images, judge.spec.image_size)
        t0 = time.perf_counter()
        q = judge.score(images, samples.labels)
        grid = run_dir / f"grid-{budget:g}min-nfe{samples.nfe}.png"
        atomic_write_bytes(grid, image_grid_png(images[:100], nrow=10))
        acc = q.class_accuracy.accuracy if q.class_accuracy else None
        s = samples.settings
        rows.append(BudgetRow(budget, samples.nfe, s.solver, s.steps, s.time_grid, s.guidance, q.fid, acc, samples.seconds, grid.name))
        acc_text = f"{acc:.4f}" if acc is not None else "-"
        say(f"[{name}] {budget:g} min, NFE {samples.nfe:3d} ({s.describe()}, w={s.guidance:g}): FID(clf) {q.fid:8.3f}  "
            f"class acc {acc_text}  ({samples.seconds + time.perf_counter() - t0:.0f} s)")
    return rows
