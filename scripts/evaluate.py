#!/usr/bin/env python
"""Evaluate a checkpoint offline: classifier FID, class accuracy per guidance scale, NLL in bits/dim.

The options and the code live in imgflow/cli/evaluate.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.evaluate import main

if __name__ == "__main__":
    run_cli(main)
