#!/usr/bin/env python
"""Training recipes compared at fixed wall-clock budgets, judged at several NFE.

The options and the code live in imgflow/cli/budget.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.budget import main

if __name__ == "__main__":
    run_cli(main)
