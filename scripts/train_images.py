#!/usr/bin/env python
"""Train an image flow model: `accelerate launch scripts/train_images.py --config configs/mnist.toml`.

The options and the code live in imgflow/cli/train.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.train import main

if __name__ == "__main__":
    run_cli(main)
