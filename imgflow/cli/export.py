"""Export a small file to ship or share: a run's EMA weights alone in float16 (or a classifier in float16).

    python scripts/export_pretrained.py runs/pretrained-mnist --name mnist          # replaces the package's mnist model
    python scripts/export_pretrained.py runs/mnist --out mnist-small.safetensors    # any run, any file

The result loads with `Sampler.from_checkpoint` (or `Sampler.from_pretrained` for a --name the package knows) and
`load_classifier`; the optimiser state and the raw weights are left out (`imgflow.pretrained.export_pretrained`).
"""

from __future__ import annotations

from collections.abc import Sequence

from imgflow.cli import ArgumentParser, check_output_file


def main(argv: Sequence[str] | None = None) -> int:
    p = ArgumentParser(prog="export_pretrained.py", description=__doc__)
    p.add_argument("source", help="a run folder, a ckpt-*.safetensors file, or a classifier file")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--name", help="write the package's shipped file of this name (imgflow.pretrained.PRETRAINED)")
    target.add_argument("--out", help="write this file")
    p.add_argument("--weights", default="ema", help="which weights of a checkpoint: ema (default), raw, ema@<decay>")
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16")
    args = p.parse_args(argv)

    import os

    import torch

    from imgflow.config import ConfigError
    from imgflow.pretrained import PRETRAINED, export_pretrained

    if args.name is not None and args.name not in PRETRAINED:
        raise ConfigError(f"--name {args.name!r} is not a shipped model; the package ships: {', '.join(PRETRAINED)} (or use --out FILE)")
    out = PRETRAINED[args.name].path if args.name else args.out
    check_output_file(out, "--out")
    path = export_pretrained(args.source, out, weights=args.weights, dtype=getattr(torch, args.dtype))
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB, {args.dtype})")
    return 0
