"""The one list of imgflow's commands: `python -m imgflow`, the scripts/ shims and the installed `imgflow-*` entry points
all name these.

Each command is a module of imgflow.cli with `build_parser()` (its options, its module docstring as the description with
example invocations) and `main(argv)`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import import_module
from types import ModuleType


@dataclass(frozen=True)
class Command:
    """One command: the imgflow.cli module that holds it, its script in scripts/, what it does, its installed entry point."""

    module: str
    script: str
    summary: str
    entry_point: str = ""

    def load(self) -> ModuleType:
        """The command's module (imports it: the heavy libraries load only now)."""
        return import_module(f"imgflow.cli.{self.module}")


#: the commands, by the name `python -m imgflow NAME` takes, in the order a person meets them
COMMANDS: dict[str, Command] = {
    "train": Command("train", "train_images.py", "train an image flow model from a TOML config (or a shipped name: --config mnist)",
                     "imgflow-train"),
    "sample": Command("sample", "sample_images.py", "write a PNG grid of samples from a checkpoint or run folder",
                      "imgflow-sample"),
    "evaluate": Command("evaluate", "evaluate.py", "classifier FID, class accuracy and NLL (bits/dim) of a checkpoint",
                        "imgflow-evaluate"),
    "sweep": Command("sweep", "nfe_sweep.py", "sample quality against the number of function evaluations, for every solver",
                     "imgflow-sweep"),
    "train-classifier": Command("classifier", "train_classifier.py", "train the evaluation classifier on a dataset",
                                "imgflow-train-classifier"),
    "export": Command("export", "export_pretrained.py", "export a run as a small model folder (or file) to share"),
    "plot-metrics": Command("plot_metrics", "plot_metrics.py", "loss curves of one or more run folders as one PNG"),
    "budget": Command("budget", "budget_comparison.py", "training recipes compared at fixed wall-clock budgets"),
    "benchmark": Command("benchmark", "benchmark_images.py", "throughput of training steps and sampling on this machine"),
    "folder-checks": Command("folder_checks", "folder_checks.py", "the image-folder cache's cost and its parity with the built-in loader"),
    "slurm": Command("slurm", "slurm_launch.py", "start training under SLURM: one torchrun agent per node"),
}


def command(name: str) -> Command:
    """The command of a name, or a one-line ConfigError naming the nearest one."""
    if name in COMMANDS:
        return COMMANDS[name]
    from imgflow.errors import ConfigError

    close = difflib.get_close_matches(name, list(COMMANDS), n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"unknown command {name!r}; {hint}the commands are: {', '.join(COMMANDS)} (python -m imgflow lists them)")


def usage() -> str:
    """What `python -m imgflow` prints: every command with what it does, and how to run them."""
    width = max(map(len, COMMANDS)) + 2
    lines = ["usage: python -m imgflow COMMAND [ARGS...]    (python -m imgflow COMMAND --help: its options and examples)", "",
             "commands:"]
    lines += [f"  {name:<{width}}{c.summary}" for name, c in COMMANDS.items()]
    entry_points = ", ".join(c.entry_point for c in COMMANDS.values() if c.entry_point)
    lines += ["", "From a clone each also runs as its script (python scripts/train_images.py, ...: COMMAND --help names it); installed,",
              f"some have names of their own: {entry_points}. Examples:", "",
              "  python -m imgflow train --config smoke                   # a shipped config by name (imgflow.config_path)",
              "  python -m imgflow sample runs/smoke --out grid.png --steps 10",
              "  accelerate launch -m imgflow train --config configs/mnist.toml    # several processes, mixed precision"]
    return "\n".join(lines)


__all__ = ["COMMANDS", "Command", "command", "usage"]
