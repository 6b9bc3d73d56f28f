"""Loss curves of training runs: one PNG from the metrics.jsonl of one or more run folders.

    python scripts/plot_metrics.py runs/mnist --out loss.png
    python scripts/plot_metrics.py outputs/budget/ours outputs/budget/baseline --x minutes --out budget-loss.png
    python scripts/plot_metrics.py runs/mnist --by-time --out loss-by-t.png    # loss against t at several steps

Each run is drawn as its logged loss (the mean over each logging window) against the step or
against wall-clock minutes; the y axis is logarithmic. --by-time draws, for one run, the mean
loss in each bin of t at a few logged steps: where in time a run misbehaves. Autoencoder runs are
drawn as their reconstruction error and KL.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imgflow.cli import ArgumentParser


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    p = ArgumentParser(prog="plot_metrics.py", description=__doc__)
    p.add_argument("runs", nargs="+", help="run folders holding metrics.jsonl")
    p.add_argument("--x", choices=["step", "minutes"], default="step")
    p.add_argument("--by-time", action="store_true", help="loss against t (one run)")
    p.add_argument("--out", default="loss.png")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    from imgflow.training.metrics_log import read_metrics
    from imgflow.training.metrics_plot import plot_autoencoder_curves, plot_loss_by_time, plot_loss_curves

    first = read_metrics(Path(args.runs[0]))
    if first and "reconstruction" in first[-1]:
        path = plot_autoencoder_curves(args.runs, args.out, x=args.x)
    elif args.by_time:
        path = plot_loss_by_time(args.runs, args.out)
    else:
        path = plot_loss_curves(args.runs, args.out, x=args.x)
    print(f"wrote {path}")
    return 0
