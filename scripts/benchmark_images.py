#!/usr/bin/env python
"""Throughput of the image pipeline on this machine: training steps and sampling; a table and a JSON file.

The options and the code live in imgflow/cli/benchmark.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.benchmark import main

if __name__ == "__main__":
    run_cli(main)
