#!/usr/bin/env python
"""Sample a PNG grid from a checkpoint: `python scripts/sample_images.py runs/mnist --out grid.png`.

The options and the code live in imgflow/cli/sample.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.sample import main

if __name__ == "__main__":
    run_cli(main)
