"""Training recipes compared at fixed wall-clock budgets, judged at several NFE.

    python scripts/budget_comparison.py --minutes 15,30 --data-root ../shared/data \\
        --classifier runs/classifiers/mnist-28.safetensors \\
        --run fm=configs/mnist.toml --run meanflow=configs/mnist_meanflow.toml \\
        --nfe 1,2,4,20 --num 1000 --out outputs/budget

Each run trains from scratch to the first budget (train.max_minutes; the clock starts at the
first step), is judged, then resumes to the next budget. At every budget and NFE it reports
FID(clf) against the held-out split and class accuracy of --num class-balanced samples (the
run's guidance scale and solver; steps = NFE / evaluations per step), with a grid. Writes
<out>/<name>/ (the run and grid-<minutes>min-nfe<N>.png), <out>/results.json and results.md.
--skip-train re-judges existing runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, parse_floats, parse_ints, parse_overrides, say
from imgflow.config import ConfigError


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    p = ArgumentParser(prog="budget_comparison.py", description=__doc__)
    p.add_argument("--run", action="append", required=True, help="NAME=CONFIG.toml (repeatable)")
    p.add_argument("--minutes", default="15", help="comma-separated budgets in minutes, e.g. 15,30 (cumulative)")
    p.add_argument("--data-root", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--nfe", default="10,20,50,100")
    p.add_argument("--num", type=int, default=1000, help="samples per NFE setting")
    p.add_argument("--out", default="outputs/budget")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run, e.g. train.lr=2e-3")
    add_runtime_arguments(p, device=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime_arguments(args)
    runs = {}
    for spec in args.run:
        name, _, config = spec.partition("=")
        if not name or not Path(config).is_file():
            raise ConfigError(f"--run must be NAME=CONFIG.toml with an existing file, got {spec!r}")
        runs[name] = config
    overrides = {"data.data_root": args.data_root, "data.download": False, **parse_overrides(args.set)}

    from imgflow.experiments.budget import budget_comparison

    report = budget_comparison(runs, args.classifier, args.out, minutes=parse_floats(args.minutes, "--minutes"),
                               nfes=parse_ints(args.nfe, "--nfe"), num=args.num, overrides=overrides, skip_train=args.skip_train,
                               log=say)
    print(report.markdown())
    return 0
