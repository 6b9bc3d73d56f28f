"""Sample quality against the number of function evaluations (NFE), for every solver and time grid.

For each fixed-step solver and each target NFE the step count is NFE / (evaluations per step,
from the solver registry); settings that do not divide are skipped. The adaptive solver runs at
each tolerance and reports the NFE it used. Every setting draws the same samples' noise and
labels, so differences come from the integration alone. One NFE is one (guided) model
evaluation of the batch.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgflow.config import ConfigError
from imgflow.core import SOLVERS, TIME_GRIDS, solver_info
from imgflow.core.sampling_settings import SamplingSettings
from imgflow.evaluation.judge import Judge
from imgflow.files import atomic_write_bytes, write_json
from imgflow.sampler import Sampler


@dataclass
class SweepSetting:
    solver: str
    time_grid: str
    steps: int
    tolerance: float | None = None  # adaptive solver only


@dataclass
class SweepRow:
    solver: str
    time_grid: str
    steps: int
    tolerance: float | None
    nfe: int
    fid: float
    class_accuracy: float | None
    seconds: float
    nonfinite: int


@dataclass
class SweepReport:
    checkpoint: str
    step: int | None
    num_samples: int
    seed: int
    guidance: float | None
    sde_epsilon: float
    fid_real_train_images: float | None
    rows: list[SweepRow] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def title(self) -> str:
        guided = f", guidance {self.guidance:g}" if self.guidance is not None else ""
        return f"{self.checkpoint} (step {self.step}), {self.num_samples} samples{guided}, seed {self.seed}"


def sweep_plan(solvers: Sequence[str], nfes: Sequence[int], tolerances: Sequence[float], grids: Sequence[str]) -> list[SweepSetting]:
    """The settings to run: fixed-step solvers at every NFE their evaluations per step divide, on every grid."""
    for name in solvers:
        solver_info(name)
    for grid in grids:
        if grid not in TIME_GRIDS:
            raise ConfigError(f"unknown time grid {grid!r}; choose from {', '.join(TIME_GRIDS)}")
    out = []
    for name in solvers:
        per = SOLVERS[name].evals_per_step
        if per is None:
            out += [SweepSetting(name, "uniform", 1, tol) for tol in tolerances]
            continue
        for grid in grids:
            out += [SweepSetting(name, grid, n // per) for n in nfes if n % per == 0 and n >= per]
    return out


def nfe_sweep(sampler: Sampler, judge: Judge, settings: Sequence[SweepSetting], *, num: int = 250, seed: int = 0,
              guidance: float | None = None, sde_epsilon: float | None = None, batch_size: int = 250,
              on_row: Callable[[SweepRow], None] | None = None) -> list[SweepRow]:
    """Score every setting on the same `num` samples' seeds and labels; `on_row` sees each row as it is done."""
    rows = []
    for s in settings:
        own = SamplingSettings.options_of(s.solver, sde_epsilon=sde_epsilon, rtol=s.tolerance, atol=s.tolerance)
        samples = sampler.sample(num, guidance=guidance, solver=s.solver, steps=s.steps, time_grid=s.time_grid, seed=seed,
                                 batch_size=batch_size, **own)
        q = judge.score(samples.images, samples.labels)
        row = SweepRow(s.solver, s.time_grid, s.steps, s.tolerance, samples.nfe, q.fid,
                       q.class_accuracy.accuracy if q.class_accuracy else None, samples.seconds, q.nonfinite)
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def sweep_table(rows: Sequence[SweepRow], floor: float | None, header: str) -> str:
    """Markdown table of the rows (solver, grid, steps or tolerance, NFE, FID(clf), class accuracy, seconds)."""
    conditional = any(r.class_accuracy is not None for r in rows)
    cols = ["solver", "time grid", "steps / tol", "NFE", "FID(clf)"] + (["class acc"] if conditional else []) + ["seconds"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    order = list(SOLVERS)
    for r in sorted(rows, key=lambda r: (order.index(r.solver), list(TIME_GRIDS).index(r.time_grid), r.nfe)):
        spec = f"tol {r.tolerance:g}" if r.tolerance is not None else str(r.steps)
        cells = [r.solver, r.time_grid if r.tolerance is None else "-", spec, str(r.nfe), f"{r.fid:.3f}"]
        if conditional:
            cells.append(f"{r.class_accuracy:.4f}" if r.class_accuracy is not None else "-")
        cells.append(f"{r.seconds:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if floor is not None:
        lines += ["", f"Real training images at the same sample size score FID(clf) {floor:.3f} (the floor)."]
    return "\n".join(lines) + "\n"


def plot_sweep(rows: Sequence[SweepRow], floor: float | None, path: str | Path, title: str) -> Path:
    """FID(clf) against NFE (log-log), one line per solver and grid; class accuracy beside it when labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    conditional = any(r.class_accuracy is not None for r in rows)
    fig, axes = plt.subplots(1, 2 if conditional else 1, figsize=(6.5 * (2 if conditional else 1), 4.5), squeeze=False)
    colours = dict(zip(SOLVERS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    metrics = [("fid", "FID (classifier features)")] + ([("class_accuracy", "class accuracy")] if conditional else [])
    for ax, (key, label) in zip(axes[0], metrics):
        groups: dict[tuple[str, str], list[SweepRow]] = {}
        for r in rows:
            groups.setdefault((r.solver, r.time_grid), []).append(r)
        for (solver, grid), rs in groups.items():
            rs = sorted(rs, key=lambda r: r.nfe)
            name = solver if rs[0].tolerance is not None else f"{solver} ({grid})"
            ax.plot([r.nfe for r in rs], [getattr(r, key) for r in rs], marker="o" if grid == "uniform" else "s",
                    linestyle="-" if grid == "uniform" else "--", color=colours.get(solver), label=name, markersize=4)
        if key == "fid" and floor is not None:
            ax.axhline(floor, color="grey", linestyle=":", label="real images (floor)")
        ax.set_xscale("log")
        ticks = sorted({r.nfe for r in rows})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        if key == "fid":
            ax.set_yscale("log")
        ax.set_xlabel("NFE (model evaluations per sample)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


def sweep_checkpoint(checkpoint: str | Path, classifier: str | Path, out_dir: str | Path, *,
                     solvers: Sequence[str] = ("euler", "midpoint", "heun", "rk4", "adaptive", "euler_maruyama"),
                     nfes: Sequence[int] = (4, 8, 16, 32), tolerances: Sequence[float] = (1e-2, 1e-3, 1e-4),
                     grids: Sequence[str] = ("uniform", "late"), num: int = 250, seed: int = 0, guidance: float | None = None,
                     sde_epsilon: float | None = None, batch_size: int = 250, weights: str = "ema",
                     data_overrides: dict[str, Any] | None = None, cache_dir: str | Path | None = None, baseline: bool = True,
                     device: str | None = None, log: Callable[[str], None] | None = None) -> SweepReport:
    """Run the sweep on a checkpoint and write <out_dir>/nfe_sweep.{json,md,png}.

    The JSON and the table are rewritten after every setting, so an interrupted sweep keeps what it finished.
    """
    import copy

    from imgflow.checkpoint import load_checkpoint

    say = log or (lambda _msg: None)
    if num < 2 or batch_size < 1:
        raise ConfigError("num must be >= 2 and batch_size >= 1")
    if any(t <= 0 for t in tolerances):
        raise ConfigError(f"tolerances must be > 0, got {list(tolerances)}")
    plan = sweep_plan(solvers, nfes, tolerances, grids)
    if not plan:
        raise ConfigError(f"no setting fits: no NFE in {list(nfes)} is divisible by the chosen solvers' evaluations per step")
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the output folder {out_dir} ({exc.strerror}); choose a writable folder") from None
    ckpt = load_checkpoint(checkpoint)
    sampler = Sampler.from_loaded(ckpt, weights, device)
    w = sampler.settings(guidance=guidance).guidance if sampler.conditional else None
    data = copy.deepcopy(ckpt.config.data)
    for key, value in (data_overrides or {}).items():
        setattr(data, key, value)
    judge = Judge.load(classifier, data, sampler.spec, cache_dir=cache_dir, device=sampler.device, log=say)
    floor = judge.real_floor(num, seed) if baseline else None
    eps = sampler.settings("euler_maruyama", sde_epsilon=sde_epsilon).options.sde_epsilon  # the SDE rows' noise level
    report = SweepReport(f"{ckpt.path.parent.name}/{ckpt.path.name}", ckpt.step, num, seed, w, eps, floor)
    paths = {"json": out_dir / "nfe_sweep.json", "md": out_dir / "nfe_sweep.md", "png": out_dir / "nfe_sweep.png"}
    t0 = time.perf_counter()

    def record(row: SweepRow) -> None:
        report.rows.append(row)
        report.seconds = time.perf_counter() - t0
        spec = f"tol {row.tolerance:g}" if row.tolerance is not None else f"{row.steps} steps, {row.time_grid}"
        acc = f" class acc {row.class_accuracy:.4f}" if row.class_accuracy is not None else ""
        say(f"[{len(report.rows)}/{len(plan)}] {row.solver:>14} {spec:<18} NFE {row.nfe:4d}  FID(clf) {row.fid:8.3f}{acc}"
            f"  ({row.seconds:.0f} s)")
        try:
            write_json(paths["json"], report.to_dict())
            atomic_write_bytes(paths["md"], sweep_table(report.rows, floor, f"# NFE sweep: {report.title}").encode())
        except OSError as exc:
            raise ConfigError(f"cannot write to {out_dir}: {exc.strerror}") from None

    nfe_sweep(sampler, judge, plan, num=num, seed=seed, guidance=w, sde_epsilon=eps, batch_size=batch_size, on_row=record)
    plot_sweep(report.rows, floor, paths["png"], report.title)
    return report
