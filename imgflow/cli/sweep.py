"""Sample quality against the number of function evaluations (NFE), for every solver and time grid.

    python scripts/nfe_sweep.py runs/mnist --classifier runs/classifiers/mnist-28.safetensors \\
        --data-root ../shared/data --out-dir runs/mnist/nfe_sweep

For each fixed-step solver and each target NFE in --nfe the step count is NFE / (evaluations per
step; settings that do not divide are skipped), on every time grid in --time-grids; the adaptive
solver runs at each tolerance in --tolerances. Every setting draws the same --num samples from the
same seeds and labels. Writes <out-dir>/nfe_sweep.md (table), nfe_sweep.json (numbers, rewritten
after every setting) and nfe_sweep.png (FID(clf) and class accuracy against NFE).
"""

from __future__ import annotations

from collections.abc import Sequence

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, parse_floats, parse_ints, parse_names, say
from imgflow.core import SOLVERS, TIME_GRIDS


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    velocity_solvers = [name for name, info in SOLVERS.items() if not info.flow_map]
    p = ArgumentParser(prog="nfe_sweep.py", description=__doc__)
    p.add_argument("checkpoint", help="ckpt-*.safetensors file or run folder")
    p.add_argument("--classifier", required=True, help="classifier file from scripts/train_classifier.py")
    p.add_argument("--out-dir", required=True, help="folder for nfe_sweep.md / .json / .png (created if missing)")
    p.add_argument("--num", "--num-images", dest="num", type=int,
                   default=250, help="samples per setting (default 250); "
                   "under torchrun write --num-images: torchrun takes --num for its own --numa-binding")
    p.add_argument("--solvers", default=",".join(velocity_solvers), help=f"comma-separated subset of {','.join(SOLVERS)}")
    p.add_argument("--nfe", default="4,8,16,32", help="target NFE budgets of the fixed-step solvers (default 4,8,16,32)")
    p.add_argument("--tolerances", default="1e-2,1e-3,1e-4", help="rtol = atol values of the adaptive solver")
    p.add_argument("--time-grids", default=",".join(TIME_GRIDS), help="uniform and/or late")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the run's sample.guidance_scale)")
    p.add_argument("--sde-epsilon", type=float, help="noise level of euler_maruyama (default: the run's)")
    p.add_argument("--data-root", help="dataset folder (default: the run's data.data_root)")
    p.add_argument("--download", action="store_true")
    p.add_argument("--cache-dir", help="folder for the reference statistics (default: next to the classifier)")
    p.add_argument("--no-baseline", action="store_true", help="skip the FID of real training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--weights", default="ema", help="ema, raw, or an extra EMA such as ema@0.99 (train.extra_ema_decays)")
    add_runtime_arguments(p)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime_arguments(args)

    import tempfile

    from imgflow.evaluation.sweep import sweep_checkpoint, sweep_table
    from imgflow.sharding import sharded_sampling

    with sharded_sampling() as shards, tempfile.TemporaryDirectory() as scratch:  # under torchrun: rank 0 writes and says
        main_process = shards.rank == 0
        report = sweep_checkpoint(
            args.checkpoint, args.classifier, args.out_dir if main_process else scratch,
            solvers=parse_names(args.solvers, "--solvers", list(SOLVERS)),
            nfes=parse_ints(args.nfe, "--nfe"), tolerances=parse_floats(args.tolerances, "--tolerances"),
            grids=parse_names(args.time_grids, "--time-grids", list(TIME_GRIDS)), num=args.num, seed=args.seed,
            guidance=args.guidance, sde_epsilon=args.sde_epsilon, batch_size=args.batch_size, weights=args.weights,
            data_overrides={"download": args.download, **({"data_root": args.data_root} if args.data_root else {})},
            cache_dir=args.cache_dir, baseline=not args.no_baseline, device=args.device, log=say if main_process else None,
        )
    if not main_process:
        return 0
    print(sweep_table(report.rows, report.fid_real_train_images, f"# NFE sweep: {report.title}"))
    print(f"wrote {args.out_dir}/nfe_sweep.md, nfe_sweep.json, nfe_sweep.png | {report.seconds:.0f} s")
    return 0
