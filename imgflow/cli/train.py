"""Train an image flow model from a TOML config (a file, or a shipped config by name: `--config mnist`).

    accelerate launch scripts/train_images.py --config configs/mnist.toml
    python scripts/train_images.py --config smoke --train.steps 200 --run.output_dir runs/smoke
    python -m imgflow train --config configs/mnist.toml --resume latest

Any config key can be overridden, e.g. `--train.steps 2000 --data.data_root ../shared/data`.
Mixed precision and the number of processes come from accelerate (`accelerate launch
--mixed_precision bf16 --num_processes 2 ...`, or `torchrun --nproc_per_node 2 ...`).
SIGTERM or Ctrl-C write a checkpoint of the current step and stop; `--resume latest` continues. `--resume auto`
continues when the run folder holds a checkpoint and starts fresh when it holds none: the one command for
`torchrun --max-restarts N` and for jobs a scheduler requeues (docs/devices.md).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments
from imgflow.config import add_override_arguments, load_config, overrides_from_args


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    parser = ArgumentParser(prog="train_images.py", description=__doc__)
    parser.add_argument("--config", help="TOML run configuration: a file, or a shipped name such as mnist (imgflow.config_path); defaults if omitted")
    parser.add_argument("--resume", help="'latest' (in run.output_dir), a run folder or a checkpoint file, or 'auto': latest when "
                        "run.output_dir holds a checkpoint, else a fresh start (for torchrun --max-restarts and requeued jobs)")
    add_runtime_arguments(parser, device=False)
    add_override_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, overrides_from_args(args))
    apply_runtime_arguments(args)

    from imgflow.training.interrupts import TrainingInterrupted
    from imgflow.training.trainer import NonFiniteLossError, Trainer

    trainer = Trainer(cfg, resume=args.resume)
    try:
        result = trainer.run(progress=not args.no_progress)
    except NonFiniteLossError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return finish(3)
    except TrainingInterrupted as exc:
        if trainer.is_main:
            print(f"interrupted: {exc}", file=sys.stderr)
        return finish(exc.exit_code)
    if trainer.is_main:
        print(f"stopped at step {result.step} ({result.stopped_by}); checkpoint {result.last_checkpoint}")
    return finish(0)


def finish(code: int) -> int:
    """Return code; in a torchrun / accelerate launch process, end the process here with it instead.

    Every file of the run is written and closed and the last collective (the barrier after the
    final checkpoint) is behind us. Left to the interpreter's teardown, gloo's C++ threads can be
    destroyed while joinable and abort a rank ("terminate called without an active exception",
    SIGABRT; about 1 two-process run in 15 on a loaded 2-core machine, with or without
    destroy_process_group), which makes torchrun report a finished run as failed. os._exit skips
    that teardown.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
