"""`python -m imgflow`: the list of commands; `python -m imgflow COMMAND [ARGS...]` runs one (imgflow.cli.commands).

    python -m imgflow                                   # the commands, each with what it does
    python -m imgflow sample runs/mnist --out grid.png
    accelerate launch -m imgflow train --config configs/mnist.toml
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Print the commands (no arguments, -h, --help) or run COMMAND's main on the rest; its exit status is returned."""
    from imgflow.cli import run
    from imgflow.cli.commands import command, usage
    from imgflow.errors import ConfigError

    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    try:
        found = command(args[0])
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return run(found.load().main, args[1:])


if __name__ == "__main__":
    sys.exit(main())
