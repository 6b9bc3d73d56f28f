"""Pictures of a run's metrics.jsonl: the loss curve, the loss against t (where a run misbehaves), and an
autoencoder's reconstruction error and KL."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from imgflow.config import ConfigError
from imgflow.files import atomic_write_bytes
from imgflow.training.metrics_log import read_metrics


def _records(run: str | Path, key: str) -> list[dict]:
    records = [r for r in read_metrics(Path(run)) if r.get(key) is not None]
    if not records:
        raise ConfigError(f"{run} has no metrics.jsonl with {key} records; pass a run folder written by train_images.py")
    return records


def _save(fig, out: str | Path) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"the folder of {out} does not exist; create it or write elsewhere")
    atomic_write_bytes(out, buf.getvalue())
    return out


def plot_loss_curves(runs: Sequence[str | Path], out: str | Path, x: str = "step") -> Path:
    """Logged loss of each run against the step (x='step') or wall-clock minutes (x='minutes'), log y axis.

    Runs with different loss reductions (mean vs per-sample sum) are on different scales: compare shapes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {run: _records(run, "loss") for run in runs}
    fig, ax = plt.subplots(figsize=(6, 4))
    for run, records in curves.items():
        xs = [r["step"] if x == "step" else r.get("elapsed_s", 0.0) / 60 for r in records]
        ax.plot(xs, [r["loss"] for r in records], label=f"{Path(run).name} (step {records[-1]['step']}, loss {records[-1]['loss']:.3g})")
    ax.set_xlabel("step" if x == "step" else "wall-clock minutes")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out)


def plot_loss_by_time(runs: Sequence[str | Path], out: str | Path, curves: int = 5) -> Path:
    """Mean loss in each bin of t at `curves` logged steps spread over the run (one panel per run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        records = _records(run, "loss_by_t")
        picks = sorted({round(i * (len(records) - 1) / max(curves - 1, 1)) for i in range(curves)})
        colours = plt.cm.viridis([i / max(len(picks) - 1, 1) for i in range(len(picks))])
        for colour, i in zip(colours, picks):
            values = records[i]["loss_by_t"]
            centres = [(k + 0.5) / len(values) for k in range(len(values))]
            ax.plot(centres, [v if v is not None else float("nan") for v in values], "o-", color=colour,
                    label=f"step {records[i]['step']}")
        ax.set_xlabel("t (0 = noise, 1 = data)")
        ax.set_ylabel("training loss in the t bin")
        ax.set_yscale("log")
        ax.set_title(Path(run).name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, out)


def plot_autoencoder_curves(runs: Sequence[str | Path], out: str | Path, x: str = "step") -> Path:
    """An autoencoder run's per-pixel reconstruction error (left) and KL per image in nats (right), log y axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run in runs:
        records = _records(run, "reconstruction")
        xs = [r["step"] if x == "step" else r.get("elapsed_s", 0.0) / 60 for r in records]
        for ax, key in zip(axes, ("reconstruction", "kl")):
            ax.plot(xs, [r[key] for r in records], label=f"{Path(run).name} ({records[-1][key]:.3g})")
    for ax, label in zip(axes, ("reconstruction error per pixel", "KL(q(z|x) || N(0, I)) per image, nats")):
        ax.set_xlabel("step" if x == "step" else "wall-clock minutes")
        ax.set_ylabel(label)
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(fig, out)
