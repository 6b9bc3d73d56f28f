#!/usr/bin/env python
"""Loss curves of training runs: one PNG from the metrics.jsonl of one or more run folders.

The options and the code live in imgflow/cli/plot_metrics.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.plot_metrics import main

if __name__ == "__main__":
    run_cli(main)
