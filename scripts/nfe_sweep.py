#!/usr/bin/env python
"""Sample quality against the number of function evaluations (NFE), for every solver and time grid (see imgflow/cli/sweep.py; `--help` lists the options)."""

from imgflow.cli import run_cli
from imgflow.cli.sweep import main

if __name__ == "__main__":
    run_cli(main)
