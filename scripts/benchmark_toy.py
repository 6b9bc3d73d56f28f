#!/usr/bin/env python
"""Benchmark the 2-D lab's training step and sampler (see toy/benchmark.py; `--help` lists the options)."""

import sys

from toy.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
