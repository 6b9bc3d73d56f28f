#!/usr/bin/env python
"""Sample quality against the number of function evaluations (NFE), for every solver and time grid.

The options and the code live in imgflow/cli/sweep.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.sweep import main

if __name__ == "__main__":
    run_cli(main)
