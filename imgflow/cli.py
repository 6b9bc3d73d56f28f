"""Shared command-line plumbing: one-line errors instead of tracebacks for known problems."""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import typing
from pathlib import Path
from typing import Callable

from imgflow.checkpoint import CheckpointError
from imgflow.config import ConfigError
from imgflow.data import DatasetNotFoundError

#: problems a user can fix; reported as "error: <message>" with exit status 2
USER_ERRORS: tuple[type[BaseException], ...] = (ConfigError, CheckpointError, DatasetNotFoundError)


def run_cli(main: Callable[[], int | None]) -> None:
    """Call main(); a user error prints one line to stderr and exits 2."""
    try:
        code = main()
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(code or 0)


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors that suggest the nearest option for a misspelt one."""

    def error(self, message: str) -> "typing.NoReturn":
        if message.startswith("unrecognized arguments:"):
            options = [o for action in self._actions for o in action.option_strings]
            unknown = [a for a in message.split(":", 1)[1].split() if a.startswith("--")]
            hints = [f"did you mean {close[0]}?" for a in unknown if (close := difflib.get_close_matches(a.split("=")[0], options, n=1))]
            if hints:
                message += "; " + " ".join(hints)
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(2)


def add_runtime_arguments(parser: argparse.ArgumentParser, device: bool = True) -> None:
    """--device (default cuda when available) and --threads, shared by the scripts."""
    if device:
        parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads for torch (0 = torch's default); on a busy shared CPU 1 can be several times faster")


def apply_runtime_arguments(args: argparse.Namespace) -> None:
    """Resolve the default device and set the thread count (one-line error for a negative count)."""
    import torch

    if args.threads < 0:
        raise ConfigError(f"--threads must be >= 0 (0 = torch's default), got {args.threads}")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    if hasattr(args, "device") and args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"


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
