#!/usr/bin/env python
"""Train the evaluation classifier on a dataset's training split and report its held-out accuracy.

The options and the code live in imgflow/cli/classifier.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.classifier import main

if __name__ == "__main__":
    run_cli(main)
