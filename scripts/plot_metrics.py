#!/usr/bin/env python
"""Loss curves of training runs: one PNG from the metrics.jsonl of one or more run folders.

    python scripts/plot_metrics.py runs/mnist --out loss.png
    python scripts/plot_metrics.py outputs/budget/ours outputs/budget/baseline --x minutes --out budget-loss.png

Each run is drawn as its logged loss (the mean over each logging window) against the step or
against wall-clock minutes; the y axis is logarithmic. Runs with different loss reductions
(mean vs per-sample sum) are on different scales: compare their shapes, not their heights.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imgflow.cli import ArgumentParser, run_cli  # noqa: E402
from imgflow.config import ConfigError  # noqa: E402
from imgflow.training.metrics_log import read_metrics  # noqa: E402


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run folders holding metrics.jsonl")
    p.add_argument("--x", choices=["step", "minutes"], default="step")
    p.add_argument("--out", default="loss.png")
    args = p.parse_args()
    curves = {}
    for run in args.runs:
        records = [r for r in read_metrics(Path(run)) if "loss" in r]
        if not records:
            raise ConfigError(f"{run} has no metrics.jsonl with loss records; pass a run folder written by train_images.py")
        curves[run] = records

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for run, records in curves.items():
        xs = [r["step"] if args.x == "step" else r.get("elapsed_s", 0.0) / 60 for r in records]
        ax.plot(xs, [r["loss"] for r in records], label=f"{Path(run).name} (step {records[-1]['step']}, loss {records[-1]['loss']:.3g})")
    ax.set_xlabel("step" if args.x == "step" else "wall-clock minutes")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
