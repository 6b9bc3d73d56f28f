#!/usr/bin/env python
"""Train an image flow model: `accelerate launch scripts/train_images.py --config configs/mnist.toml`.

Any config key can be overridden, e.g. `--train.steps 2000 --data.data_root ../shared/data`.
Mixed precision and the number of processes come from accelerate (`accelerate launch
--mixed_precision bf16 --num_processes 2 ...`, or `torchrun --nproc_per_node 2 ...`).
"""

from __future__ import annotations

import argparse

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, run_cli
from imgflow.config import add_override_arguments, load_config, overrides_from_args


def main() -> int:
    parser = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="TOML run configuration (configs/*.toml); defaults if omitted")
    parser.add_argument("--resume", help="'latest' (in run.output_dir), a run folder or a checkpoint file")
    parser.add_argument("--no-progress", action="store_true", help="hide the tqdm bar")
    add_runtime_arguments(parser, device=False)
    add_override_arguments(parser)
    args = parser.parse_args()
    cfg = load_config(args.config, overrides_from_args(args))
    apply_runtime_arguments(args)

    from imgflow.training.trainer import NonFiniteLossError, train

    try:
        result = train(cfg, resume=args.resume, progress=not args.no_progress)
    except NonFiniteLossError as exc:
        print(f"error: {exc}")
        return 3
    from accelerate.state import PartialState

    if PartialState().is_main_process:
        print(f"stopped at step {result.step} ({result.stopped_by}); checkpoint {result.last_checkpoint}")
    return 0


if __name__ == "__main__":
    run_cli(main)
