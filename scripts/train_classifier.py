#!/usr/bin/env python
"""Train the evaluation classifier on a dataset's training split and report test accuracy.

    python scripts/train_classifier.py --dataset mnist --data-root ../shared/data \\
        --out runs/classifiers/mnist-28.safetensors

The file (safetensors) holds the weights and, as metadata, the dataset, image size, test-split
accuracy and architecture; scripts/evaluate.py and scripts/nfe_sweep.py take it as --classifier.
Batches are indexed from one in-memory tensor (no augmentation), so the default four epochs of
MNIST take about 4 minutes on one CPU thread (--threads 1 helps on a busy shared CPU).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, run_cli
from imgflow.config import ConfigError


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("mnist", "fashion_mnist", "cifar10"), default="mnist")
    p.add_argument("--data-root", default="data", help="folder holding MNIST/ or FashionMNIST/ (torchvision layout)")
    p.add_argument("--image-size", type=int, default=28, help="28, or 32 (padded, as data.image_size = 32 does)")
    p.add_argument("--resize", action="store_true", help="resize instead of padding (match the model's data.resize)")
    p.add_argument("--download", action="store_true", help="allow torchvision to download the data")
    p.add_argument("--out", help="classifier file (default runs/classifiers/<dataset>-<size>.safetensors)")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-subset", type=int, default=0, help="use only the first N training images (0 = all)")
    add_runtime_arguments(p)
    args = p.parse_args()
    apply_runtime_arguments(args)

    from imgflow.data import ImageData, load_image_data
    from imgflow.evaluation.classifier import ClassifierArch, save_classifier, train_classifier

    out = Path(args.out or f"runs/classifiers/{args.dataset}-{args.image_size}.safetensors")
    for name in ("epochs", "batch_size", "lr"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {out.parent} for --out ({exc.strerror}); choose a writable path") from None
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"--out folder {out.parent} is not writable; choose another --out")

    t0 = time.perf_counter()
    kw = dict(image_size=args.image_size, resize=args.resize, download=args.download)
    train = load_image_data(args.dataset, args.data_root, train=True, **kw)
    test = load_image_data(args.dataset, args.data_root, train=False, **kw)
    if args.train_subset > 0:
        train = ImageData(train.images[: args.train_subset], train.labels[: args.train_subset])
    print(f"{args.dataset}: {len(train)} training and {len(test)} test images of shape {tuple(train.shape)} "
          f"(loaded in {time.perf_counter() - t0:.1f} s)")
    arch = ClassifierArch(in_channels=train.shape[0], num_classes=train.num_classes)
    result = train_classifier(train, test, arch, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              seed=args.seed, device=args.device, log=print)
    extra = {"epochs": str(args.epochs), "batch_size": str(args.batch_size), "lr": str(args.lr), "seed": str(args.seed),
             "train_images": str(len(train)), "resize": str(args.resize)}
    try:
        save_classifier(out, result.model, args.dataset, args.image_size, result.test_accuracy, extra)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}; choose a writable --out") from None
    print(f"test accuracy {result.test_accuracy:.4f} ({len(test)} test images) | {result.steps} steps in "
          f"{result.seconds:.0f} s | wrote {out}")
    return 0



if __name__ == "__main__":
    run_cli(main)
