"""Throughput of the image pipeline on this machine: training steps and sampling; a table and a JSON file.

    python scripts/benchmark_images.py --configs smoke mnist lab_baseline --batches 32 64 128
    python scripts/benchmark_images.py --configs mnist mnist_meanflow --batches 64 --precisions fp32
    python scripts/benchmark_images.py --configs mnist --batches 64 --profile   # where a step's time goes

CONFIGS are shipped config names (configs/<name>.toml) or TOML paths. Training rows time the
full step (batch draw, forward, backward, clipping, Adam, EMA) on random data: the median of
--repeats steps after --warmup; sampling rows the config's sampler at --sample-nfe evaluations.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, parse_overrides, say


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    p = ArgumentParser(prog="benchmark_images.py", description=__doc__)
    p.add_argument("--configs", nargs="+", default=["smoke", "mnist", "lab_baseline"])
    p.add_argument("--batches", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sample-nfe", type=int, default=20)
    p.add_argument("--sample-images", type=int, default=100)
    p.add_argument("--profile", action="store_true", help="profile the first config and batch (fp32) instead")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--out", default="outputs/benchmarks/images.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for every config, e.g. flow.mean_flow.equal_fraction=0.75")
    add_runtime_arguments(p, device=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime_arguments(args)

    import tempfile

    from imgflow.experiments.benchmark import benchmark_images, format_tables, machine_info, make_trainer, profile_training

    overrides = parse_overrides(args.set)
    from imgflow.files import write_json

    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            trainer = make_trainer(args.configs[0], args.batches[0], "fp32", args.channels_last[0] == "on", False, Path(tmp), overrides)
            phases, table = profile_training(trainer, args.profile_steps)
            trainer.lock.release()
        print("| phase | ms/step | share of wall |\n|---|---:|---:|")
        print("\n".join(f"| {r['phase']} | {r['ms_per_step']:.1f} | {r['share']:.1%} |" for r in phases))
        print(table)
        rows = [{"kind": "profile", "config": args.configs[0], "batch": args.batches[0], "phases": phases}]
    else:
        rows = benchmark_images(args.configs, args.batches, args.precisions, [c == "on" for c in args.channels_last],
                                [c == "on" for c in args.compile], args.warmup, args.repeats, args.sample_nfe, args.sample_images,
                                overrides=overrides, log=say)
        print(format_tables(rows))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"machine": machine_info(), "rows": rows})
    print(f"wrote {out}")
    return 0
