"""Shared command-line plumbing: one-line errors instead of tracebacks for known problems."""

from __future__ import annotations

import sys
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
