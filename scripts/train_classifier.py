#!/usr/bin/env python
"""Train the evaluation classifier on a dataset's training split and report its held-out accuracy (see imgflow/cli/classifier.py; `--help` lists the options)."""

from imgflow.cli import run_cli
from imgflow.cli.classifier import main

if __name__ == "__main__":
    run_cli(main)
