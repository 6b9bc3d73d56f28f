"""The command lines: each module parses arguments, calls one library function and prints.

`scripts/*.py` are three-line shims around these modules (so `accelerate launch
scripts/train_images.py` and `python scripts/sample_images.py` work from a checkout), and the
same `main(argv)` functions run as `python -m imgflow COMMAND` and are installed as `imgflow-train`,
`imgflow-sample`, ...: `imgflow.cli.commands.COMMANDS` is the one list. Tests call `run(main, argv)` directly.

Every problem a user can fix is reported as one line `error: ...` on stderr with exit status 2,
before any work that would be lost and without changing anything on disk.

Progress bars show only on a terminal (`imgflow.core.progress`); `--no-progress` hides every bar of
the command, the folder conversion's included, for as long as that command runs.
"""

from __future__ import annotations

import argparse
import contextvars
import difflib
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path

from imgflow.checkpoint import CheckpointError
from imgflow.config import ConfigError
from imgflow.data import DataError, DatasetNotFoundError

#: problems a user can fix; reported as "error: <message>" with exit status 2
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, DatasetNotFoundError, DataError)

Main = Callable[[Sequence[str] | None], int | None]


def run(main: Main, argv: Sequence[str] | None = None) -> int:
    """Call main(argv) and return its exit status; a user error prints one line and gives 2.

    main runs in a copy of the caller's context, so what a command switches off for itself (--no-progress)
    ends with it.
    """
    try:
        return int(contextvars.copy_context().run(main, argv) or 0)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 0


def run_cli(main: Main) -> typing.NoReturn:
    """The entry point of a script: run main on sys.argv and exit with its status."""
    sys.exit(run(main, sys.argv[1:]))


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors that suggest the nearest option for a misspelt one."""

    def __init__(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:
        if message.startswith("unrecognized arguments:"):
            options = [o for action in self._actions for o in action.option_strings]
            unknown = [a for a in message.split(":", 1)[1].split() if a.startswith("--")]
            hints = [f"did you mean {close[0]}?" for a in unknown if (close := difflib.get_close_matches(a.split("=")[0], options, n=1))]
            if hints:
                message += "; " + " ".join(hints)
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def add_runtime_arguments(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """--device (default: `imgflow.devices.default_device`), --threads and --no-progress, shared by the scripts."""
    if device:
        parser.add_argument("--device", default=None, help="torch device (default: cuda, else mps, else cpu: imgflow.devices.default_device)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0 = torch's default); on a busy shared CPU 1 can be several times faster")
    parser.add_argument("--no-progress", action="store_true",
                        help="hide every progress bar, the image folder's conversion included (bars show only on a terminal anyway)")


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Resolve the default device, set the thread count (one-line error for a negative count), honour --no-progress."""
    import torch

    from imgflow.core.progress import silence_progress_bars

    if getattr(args, "no_progress", False):
        silence_progress_bars()  # for the rest of this command (run() gives each command its own context)
    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch's default), got {args.threads}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if hasattr(args, "device") and args.device in (None, "auto"):
        from imgflow.devices import default_device

        args.device = str(default_device())


def add_solver_option_arguments(parser: argparse.ArgumentParser) -> None:
    """One --<setting> option per setting a registered solver has of its own (`SolverInfo.options`: --rtol, --atol of
    adaptive, --sde-epsilon of euler_maruyama, ...); given for another solver, `Sampler.settings` refuses it."""
    import dataclasses

    from imgflow.core import SOLVERS

    owners: dict[str, list[str]] = {}
    kinds: dict[str, type] = {}
    for name, info in SOLVERS.items():
        hints = typing.get_type_hints(info.options)
        for f in dataclasses.fields(info.options):
            owners.setdefault(f.name, []).append(name)
            kinds[f.name] = hints[f.name]
    for option, solvers in owners.items():
        parser.add_argument(f"--{option.replace('_', '-')}", dest=f"solver_option:{option}", type=kinds[option], default=None,
                            help=f"{option} of {' and '.join(solvers)} (default: the run's, else the solver's)")


def solver_options_from_args(args: argparse.Namespace) -> dict[str, typing.Any]:
    """The solver settings given on the command line (add_solver_option_arguments), by name."""
    return {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("solver_option:") and v is not None}


def check_output_file(path: str | Path | None, option: str) -> None:
    """Fail before any work if an output file's folder is missing or not writable."""
    if path is None:
        return
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        raise ConfigError(f"{option} {path} is a folder; give a file name")
    if not folder.is_dir():
        raise ConfigError(f"{option} folder {folder} does not exist; create it or write elsewhere")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} folder {folder} is not writable; choose another {option}")


def check_positive(args: argparse.Namespace, *names: str) -> None:
    """--name must be >= 1 for each given integer option that was set."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {value}")


def parse_floats(text: str, option: str) -> list[float]:
    """'1,2,3' -> [1.0, 2.0, 3.0] or a one-line ConfigError naming the option."""
    import math

    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated numbers like 1,2,3, got {text!r}") from None
    if not values or any(not math.isfinite(v) for v in values):
        raise ConfigError(f"{option} must be comma-separated finite numbers like 1,2,3, got {text!r}")
    return values


def parse_ints(text: str, option: str) -> list[int]:
    """'4,8,16' -> [4, 8, 16] (each >= 1) or a one-line ConfigError naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers like 4,8,16, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{option} must be comma-separated integers >= 1, got {text!r}")
    return values


def parse_names(text: str, option: str, allowed: Sequence[str]) -> list[str]:
    """'a,b' -> ['a', 'b'], each one of `allowed`, or a one-line ConfigError."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        raise ConfigError(f"{option} must be a comma-separated subset of {','.join(allowed)}, got {text!r}")
    return names


def say(message: str) -> None:
    """Progress lines go to stderr, results to stdout."""
    print(message, file=sys.stderr, flush=True)


def _run_command(name: str) -> typing.NoReturn:
    """Run the command of this name (imgflow.cli.commands.COMMANDS) on sys.argv: the installed entry points below."""
    from imgflow.cli.commands import COMMANDS

    run_cli(COMMANDS[name].load().main)


def train_entry() -> None:
    """`imgflow-train` (installed with the package): scripts/train_images.py, python -m imgflow train."""
    _run_command("train")


def sample_entry() -> None:
    """`imgflow-sample`: scripts/sample_images.py, python -m imgflow sample."""
    _run_command("sample")


def evaluate_entry() -> None:
    """`imgflow-evaluate`: scripts/evaluate.py, python -m imgflow evaluate."""
    _run_command("evaluate")


def sweep_entry() -> None:
    """`imgflow-sweep`: scripts/nfe_sweep.py, python -m imgflow sweep."""
    _run_command("sweep")


def classifier_entry() -> None:
    """`imgflow-train-classifier`: scripts/train_classifier.py, python -m imgflow train-classifier."""
    _run_command("train-classifier")


def parse_overrides(items: Sequence[str]) -> dict[str, typing.Any]:
    """{key: value} of repeated --set KEY=VALUE options (values read as TOML literals)."""
    from imgflow.config import parse_literal

    overrides: dict[str, typing.Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set must be KEY=VALUE like train.lr=2e-3, got {item!r}")
        overrides[key] = parse_literal(value)
    return overrides
