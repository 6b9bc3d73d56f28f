#!/usr/bin/env python
"""Export a run's EMA weights alone in float16 (or a classifier): a small file to ship or share.

The options and the code live in imgflow/cli/export.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.export import main

if __name__ == "__main__":
    run_cli(main)
