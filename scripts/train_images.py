#!/usr/bin/env python
"""Train an image flow model: `accelerate launch scripts/train_images.py --config configs/mnist.toml` (see imgflow/cli/train.py; `--help` lists the options)."""

from imgflow.cli import run_cli
from imgflow.cli.train import main

if __name__ == "__main__":
    run_cli(main)
