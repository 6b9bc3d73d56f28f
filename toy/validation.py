"""The validation runner: every check, one table, figures + JSON + CSV, a non-zero exit on failure.

    python -m toy [--quick] [--out DIR] [--seed N] [--checks 1,7] [--threads N] [--progress]
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

import torch

from toy.checks import ALL_CHECKS, FULL, QUICK, CheckResult, Context

DEFAULT_OUT = "outputs/toy_validation"


def run_validation(
    quick: bool = False,
    out_dir: str | Path = DEFAULT_OUT,
    seed: int = 0,
    checks: Sequence[int] | None = None,
    threads: int | None = 1,
    progress: bool = False,
    verbose: bool = True,
) -> list[CheckResult]:
    """Run the selected checks (1-based indices; all by default) and write the report files.

    threads: torch intra-op threads during the run (restored afterwards). The default 1 is
    deliberate: the 2-D models are far too small to gain from intra-op parallelism, and on a
    shared 2-core machine two spinning threads ran up to 10x slower than one. None keeps
    torch's setting.
    """
    out = Path(out_dir)
    ctx = Context(QUICK if quick else FULL, out, seed=seed, progress=progress)
    selected = [(i + 1, f) for i, f in enumerate(ALL_CHECKS) if checks is None or (i + 1) in set(checks)]
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    results: list[CheckResult] = []
    t_start = time.perf_counter()
    try:
        for idx, fn in selected:
            t0 = time.perf_counter()
            try:
                res = fn(ctx)
            except Exception as exc:  # a crashing check is a failing row, the others still run
                res = CheckResult(f"{idx:02d}_{fn.__name__.removeprefix('check_')}", fn.__doc__.splitlines()[0] if fn.__doc__ else "")
                res.error = f"{type(exc).__name__}: {exc}"
                if verbose:
                    traceback.print_exc()
            res.seconds = time.perf_counter() - t0
            results.append(res)
            if verbose:
                status = "PASS" if res.passed else "FAIL"
                print(f"[{status}] {res.name} ({res.seconds:.1f}s)", file=sys.stderr, flush=True)
    finally:
        torch.set_num_threads(old_threads)
    total = time.perf_counter() - t_start
    write_reports(results, out, ctx, total)
    if verbose:
        print(format_table(results))
        n_pass = sum(r.passed for r in results)
        print(f"\n{n_pass}/{len(results)} checks passed in {total:.0f}s ({ctx.sizes.label}, seed {seed}); reports in {out}/")
    return results


def table_rows(results: Sequence[CheckResult]) -> list[dict[str, str]]:
    rows = []
    for r in results:
        if r.error is not None:
            rows.append({"check": r.name, "quantity": "ERROR", "measured": r.error[:60], "tolerance": "-", "result": "FAIL"})
        for m in r.measurements:
            rows.append(
                {
                    "check": r.name,
                    "quantity": m.quantity,
                    "measured": f"{m.value:.4g}" if abs(m.value) >= 1e-3 or m.value == 0 else f"{m.value:.3e}",
                    "tolerance": m.tolerance_text(),
                    "result": "PASS" if m.passed else "FAIL",
                }
            )
    return rows


def format_table(results: Sequence[CheckResult]) -> str:
    """One markdown table: check | quantity | measured | tolerance | result ('|' in cells escaped)."""
    rows = [{k: v.replace("|", "\\|") for k, v in r.items()} for r in table_rows(results)]
    cols = ["check", "quantity", "measured", "tolerance", "result"]
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) if rows else len(c) for c in cols}
    line = lambda r: "| " + " | ".join(r[c].ljust(widths[c]) for c in cols) + " |"
    sep = "|" + "|".join("-" * (widths[c] + 2) for c in cols) + "|"
    return "\n".join([line({c: c for c in cols}), sep, *(line(r) for r in rows)])


def write_reports(results: Sequence[CheckResult], out: Path, ctx: Context, total_seconds: float) -> None:
    """results.json (everything), results.csv (the table) and results.md (the printed table)."""
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "size": ctx.sizes.label,
        "seed": ctx.seed,
        "passed": all(r.passed for r in results),
        "seconds": round(total_seconds, 1),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "sizes": ctx.sizes.__dict__,
        "checks": [
            {
                "name": r.name,
                "title": r.title,
                "passed": r.passed,
                "seconds": round(r.seconds, 2),
                "error": r.error,
                "figures": r.figures,
                "measurements": [m.as_dict() for m in r.measurements],
            }
            for r in results
        ],
    }
    (out / "results.json").write_text(json.dumps(payload, indent=2))
    rows = table_rows(results)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["check", "quantity", "measured", "tolerance", "result"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "results.md").write_text(format_table(results) + "\n")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m toy", description="Run the 2-D lab's numerical validations.")
    p.add_argument("--quick", action="store_true", help="CI size (about 25 s on 2 CPU cores)")
    p.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=int, default=0, help="run seed (every check derives its own from it)")
    p.add_argument("--checks", default=None, help="comma-separated 1-based check numbers, e.g. 1,7 (default: all)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; 0 keeps torch's default)")
    p.add_argument("--progress", action="store_true", help="tqdm bars while training")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    checks = [int(c) for c in args.checks.split(",")] if args.checks else None
    results = run_validation(
        quick=args.quick,
        out_dir=args.out,
        seed=args.seed,
        checks=checks,
        threads=args.threads or None,
        progress=args.progress,
    )
    return 0 if results and all(r.passed for r in results) else 1
