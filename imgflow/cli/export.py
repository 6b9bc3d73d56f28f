"""Export a model to share: a run as a Hub-style model folder (config.json, model.safetensors, README.md card).

    python scripts/export_pretrained.py runs/mnist --out my-mnist                       # a folder; float16 EMA weights
    python scripts/evaluate.py runs/mnist --classifier clf.safetensors --json eval.json
    python scripts/export_pretrained.py runs/mnist --out my-mnist --scores eval.json --license mit --overwrite
    python scripts/export_pretrained.py runs/pretrained-mnist --name mnist              # replaces the package's mnist

The folder loads with `Sampler.from_pretrained("my-mnist")`, samples with `python scripts/sample_images.py my-mnist
--out grid.png`, and uploads to the Hub as it is (`hf upload owner/my-mnist my-mnist`), after which
`Sampler.from_pretrained("owner/my-mnist")` fetches it. --scores puts what evaluate.py measured into the card (its
model-index and a table). A classifier file (scripts/train_classifier.py) is exported as one float16 file.
The optimiser state and the raw weights are left out (`imgflow.export.export_pretrained`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from imgflow.cli import ArgumentParser


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="export_pretrained.py", description=__doc__)
    p.add_argument("source", help="a run folder, a ckpt-*.safetensors file, a model folder, or a classifier file")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--name", help="write the package's shipped model of this name (imgflow.pretrained.PRETRAINED)")
    target.add_argument("--out", help="the model folder to write (a classifier: the file)")
    p.add_argument("--weights", default="ema", help="which weights of a checkpoint: ema (default), raw, ema@<decay>")
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16",
                   help="of the weights on disk (default float16: half the size; samples differ from float32 by its rounding)")
    p.add_argument("--scores", nargs="+", default=[], metavar="JSON", help="reports of scripts/evaluate.py --json for the model card")
    p.add_argument("--license", help="the card's license field, e.g. mit or cc-by-4.0 (default: left out)")
    p.add_argument("--tags", default="", help="comma-separated extra tags for the card")
    p.add_argument("--description", default="", help="a paragraph for the card: what the model is and how it was trained")
    p.add_argument("--config-name", default="", help="the training config's file, for the card (e.g. configs/mnist.toml)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder (only once the new one is complete)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    import torch

    from imgflow.config import ConfigError
    from imgflow.evaluation.report import scores_from_report
    from imgflow.export import export_pretrained
    from imgflow.pretrained import PRETRAINED, folder_size

    if args.name is not None and args.name not in PRETRAINED:
        raise ConfigError(f"--name {args.name!r} is not a shipped model; the package ships: {', '.join(PRETRAINED)} (or use --out FOLDER)")
    scores = []
    for report in args.scores:
        try:
            with open(report) as fh:
                scores += scores_from_report(json.load(fh))
        except OSError as exc:
            raise ConfigError(f"--scores {report}: {exc.strerror}; pass the JSON file evaluate.py --json wrote") from None
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--scores {report} is not JSON (line {exc.lineno}: {exc.msg}); pass the file evaluate.py --json wrote") from None
    entry = PRETRAINED[args.name] if args.name else None
    out = entry.path if entry else args.out
    card = {k: v for k, v in {"scores": scores, "license": args.license, "description": args.description,
                              "config_name": args.config_name,
                              "tags": [t.strip() for t in args.tags.split(",") if t.strip()]}.items() if v}
    path = export_pretrained(args.source, out, weights=args.weights, dtype=getattr(torch, args.dtype), entry=entry,
                             overwrite=args.overwrite or entry is not None, **card)
    print(f"wrote {path} ({folder_size(path) / 1e6:.2f} MB, {args.dtype})")
    return 0
