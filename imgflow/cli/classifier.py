"""Train the evaluation classifier on a dataset's training split and report its held-out accuracy.

    python scripts/train_classifier.py --dataset mnist --data-root ../shared/data \\
        --out runs/classifiers/mnist-28.safetensors
    python scripts/train_classifier.py --run runs/pets --out runs/classifiers/pets.safetensors   # a run's own data
    python scripts/train_classifier.py --config configs/folder64.toml --data.folder.path PICS --out pets.safetensors

The data is a run's [data] section (--run: a checkpoint or run folder; --config: a TOML file;
neither: the defaults), changed by --dataset / --data-root / --image-size / --resize /
--download or any --data.KEY VALUE. The file (safetensors) holds the weights and, as
metadata, the data identity, class names and held-out accuracy; scripts/evaluate.py and
scripts/nfe_sweep.py take it as --classifier. Batches are indexed from one in-memory tensor
(no augmentation): four epochs of MNIST take a few minutes on a CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, say
from imgflow.config import CHOICES, add_override_arguments, flatten_tables, load_config, overrides_from_args


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    p = ArgumentParser(prog="train_classifier.py", description=__doc__)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--run", help="take the [data] section of this checkpoint or run folder")
    source.add_argument("--config", help="take the [data] section of this TOML config")
    p.add_argument("--dataset", choices=CHOICES["data.dataset"], help="shortcut for --data.dataset")
    p.add_argument("--data-root", help="shortcut for --data.data_root")
    p.add_argument("--image-size", type=int, help="shortcut for --data.image_size (28, or 32 padded as data.image_size = 32 does)")
    p.add_argument("--resize", action="store_true", help="shortcut for --data.resize true")
    p.add_argument("--download", action="store_true", help="allow torchvision to download the data")
    p.add_argument("--out", help="classifier file (default runs/classifiers/<dataset>-<size>.safetensors)")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-subset", type=int, default=0, help="use only the first N training images (0 = all)")
    add_runtime_arguments(p)
    add_override_arguments(p, sections=("data",))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime_arguments(args)
    overrides = overrides_from_args(args)
    for flag, key in (("dataset", "data.dataset"), ("data_root", "data.data_root"), ("image_size", "data.image_size")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    if args.resize:
        overrides["data.resize"] = True
    overrides["data.download"] = args.download

    from imgflow.evaluation.classifier import fit_classifier

    if args.run:
        from imgflow.checkpoint import load_checkpoint

        base = load_checkpoint(args.run).config.to_dict()
        cfg = load_config(None, dict(flatten_tables({"data": base["data"]})) | overrides)
    else:
        cfg = load_config(args.config, overrides)
    out = args.out or f"runs/classifiers/{cfg.data.dataset}-{cfg.data.image_size}.safetensors"
    result, path = fit_classifier(cfg.data, out, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                                  train_subset=args.train_subset, device=args.device, log=say)
    print(f"held-out accuracy {result.test_accuracy:.4f} | {result.steps} steps in {result.seconds:.0f} s | wrote {path}")
    return 0
