#!/usr/bin/env python
"""Start this node's torchrun agent for a SLURM job: `srun python scripts/slurm_launch.py -- --config configs/mnist.toml`.

The options and the code live in imgflow/cli/slurm.py (`--help` lists them); launch/slurm_train.sbatch is the job script.
"""

from imgflow.cli import run_cli
from imgflow.cli.slurm import main

if __name__ == "__main__":
    run_cli(main)
