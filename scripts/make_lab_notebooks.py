"""Regenerate the labs' solution and student notebooks from their percent scripts (docs/notebooks/NN_name.py).

    python scripts/make_lab_notebooks.py            # write docs/notebooks/NN_name.ipynb and docs/notebooks/student/NN_name.ipynb
    python scripts/make_lab_notebooks.py --check    # exit 1 naming the stale ones (what the test suite checks)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from imgflow.lab_versions import lab_notebooks_out_of_sync, write_lab_notebooks

LABS = Path(__file__).resolve().parents[1] / "docs" / "notebooks"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only report notebooks that are out of date")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    scripts = sorted(LABS.glob("[0-9][0-9]_*.py"))
    if args.check:
        stale = [p for s in scripts for p in lab_notebooks_out_of_sync(s)]
        for p in stale:
            print(f"out of date: {p.relative_to(LABS.parents[1])}")
        return 1 if stale else 0
    for s in scripts:
        for p in write_lab_notebooks(s):
            print(f"wrote {p.relative_to(LABS.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
