#!/usr/bin/env python
"""Training recipes compared at fixed wall-clock budgets, judged at several NFE (see imgflow/cli/budget.py; `--help` lists the options)."""

from imgflow.cli import run_cli
from imgflow.cli.budget import main

if __name__ == "__main__":
    run_cli(main)
