#!/usr/bin/env python
"""The folder path on real data: the cost of its cache, and parity with the built-in loader.

The options and the code live in imgflow/cli/folder_checks.py (`--help` lists them).
"""

from imgflow.cli import run_cli
from imgflow.cli.folder_checks import main

if __name__ == "__main__":
    run_cli(main)
