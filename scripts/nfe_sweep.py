#!/usr/bin/env python
"""Sample quality against the number of function evaluations (NFE), for every solver and time grid.

    python scripts/nfe_sweep.py runs/mnist --classifier runs/classifiers/mnist-28.safetensors \\
        --data-root ../shared/data --out-dir runs/mnist/nfe_sweep

For each fixed-step solver (euler, midpoint, heun, rk4, and the euler_maruyama SDE) and each
target NFE in --nfe, the step count is NFE / (evaluations per step) (settings that do not divide
are skipped), on every time grid in --time-grids ("uniform", or "late": steps shrink towards the
data end, imgflow.core.power_time_grid with power 2). The adaptive solver runs at each tolerance
in --tolerances and reports the NFE it used. Every setting draws the same --num samples from the
same per-sample seeds and labels, so differences come from the integration alone. One NFE is one
(guided) model evaluation of the batch.

Writes <out-dir>/nfe_sweep.md (table), nfe_sweep.json (numbers; rewritten after every setting,
so an interrupted sweep keeps what it finished) and nfe_sweep.png (FID(clf) vs NFE, log x-axis;
class accuracy beside it for conditional models).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, run_cli
from imgflow.config import ConfigError

NFE_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "euler_maruyama": 1}
ALL_SOLVERS = ("euler", "midpoint", "heun", "rk4", "adaptive", "euler_maruyama")
GRIDS = ("uniform", "late")


def plan(solvers: list[str], nfes: list[int], tolerances: list[float], grids: list[str]) -> list[dict]:
    """The settings to run: dicts with solver, time_grid, num_steps (fixed) or tolerance (adaptive)."""
    out = []
    for solver in solvers:
        if solver == "adaptive":
            out += [{"solver": solver, "time_grid": "uniform", "num_steps": 1, "tolerance": tol} for tol in tolerances]
            continue
        per = NFE_PER_STEP[solver]
        for grid in grids:
            out += [{"solver": solver, "time_grid": grid, "num_steps": n // per, "tolerance": None}
                    for n in nfes if n % per == 0 and n >= per]
    return out


def markdown_table(rows: list[dict], conditional: bool, floor: float | None, header: str) -> str:
    cols = ["solver", "time grid", "steps / tol", "NFE", "FID(clf)"] + (["class acc"] if conditional else []) + ["seconds"]
    lines = [header, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in sorted(rows, key=lambda r: (ALL_SOLVERS.index(r["solver"]), GRIDS.index(r["time_grid"]), r["nfe"])):
        spec = f"tol {r['tolerance']:g}" if r["tolerance"] is not None else str(r["num_steps"])
        cells = [r["solver"], r["time_grid"] if r["solver"] != "adaptive" else "-", spec, str(r["nfe"]), f"{r['fid']:.3f}"]
        if conditional:
            cells.append(f"{r['class_accuracy']:.4f}")
        cells.append(f"{r['sampling_seconds']:.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    if floor is not None:
        lines += ["", f"Real training images at the same sample size score FID(clf) {floor:.3f} (the floor)."]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], conditional: bool, floor: float | None, path: Path, title: str) -> None:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    from imgflow.checkpoint import atomic_write_bytes

    ncols = 2 if conditional else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.5), squeeze=False)
    colours = dict(zip(ALL_SOLVERS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    metrics = [("fid", "FID (classifier features)")] + ([("class_accuracy", "class accuracy")] if conditional else [])
    for ax, (key, label) in zip(axes[0], metrics):
        groups: dict[tuple[str, str], list[dict]] = {}
        for r in rows:
            groups.setdefault((r["solver"], r["time_grid"]), []).append(r)
        for (solver, grid), rs in groups.items():
            rs = sorted(rs, key=lambda r: r["nfe"])
            name = solver if solver == "adaptive" else f"{solver} ({grid})"
            ax.plot([r["nfe"] for r in rs], [r[key] for r in rs], marker="o" if grid == "uniform" else "s",
                    linestyle="-" if grid == "uniform" else "--", color=colours.get(solver), label=name, markersize=4)
        if key == "fid" and floor is not None:
            ax.axhline(floor, color="grey", linestyle=":", label="real images (floor)")
        ax.set_xscale("log")
        ticks = sorted({r["nfe"] for r in rows})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(NullFormatter())
        if key == "fid":
            ax.set_yscale("log")
        ax.set_xlabel("NFE (model evaluations per sample)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="ckpt-*.safetensors file or run folder")
    p.add_argument("--classifier", required=True, help="classifier file from scripts/train_classifier.py")
    p.add_argument("--out-dir", required=True, help="folder for nfe_sweep.md / .json / .png (created if missing)")
    p.add_argument("--num", type=int, default=250, help="samples per setting (default 250)")
    p.add_argument("--solvers", default=",".join(ALL_SOLVERS), help=f"comma-separated subset of {','.join(ALL_SOLVERS)}")
    p.add_argument("--nfe", default="4,8,16,32", help="target NFE budgets of the fixed-step solvers (default 4,8,16,32)")
    p.add_argument("--tolerances", default="1e-2,1e-3,1e-4", help="rtol = atol values of the adaptive solver")
    p.add_argument("--time-grids", default="uniform,late", help="uniform and/or late")
    p.add_argument("--guidance", type=float, help="guidance scale (default: the run's sample.guidance_scale)")
    p.add_argument("--sde-epsilon", type=float, help="noise level of euler_maruyama (default: the run's)")
    p.add_argument("--data-root", help="dataset folder (default: the run's data.data_root)")
    p.add_argument("--download", action="store_true")
    p.add_argument("--cache-dir", help="folder for the reference statistics (default: next to the classifier)")
    p.add_argument("--no-baseline", action="store_true", help="skip the FID of real training images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=250)
    p.add_argument("--weights", choices=("ema", "raw"), default="ema")
    add_runtime_arguments(p)
    args = p.parse_args()
    apply_runtime_arguments(args)

    from imgflow.evaluation.runner import parse_floats, parse_ints

    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    bad = [s for s in solvers if s not in ALL_SOLVERS]
    if bad or not solvers:
        raise ConfigError(f"--solvers must be a comma-separated subset of {','.join(ALL_SOLVERS)}, got {args.solvers!r}")
    grids = [g.strip() for g in args.time_grids.split(",") if g.strip()]
    if not grids or any(g not in GRIDS for g in grids):
        raise ConfigError(f"--time-grids must be uniform and/or late, got {args.time_grids!r}")
    nfes = parse_ints(args.nfe, "--nfe")
    tolerances = parse_floats(args.tolerances, "--tolerances")
    if any(t <= 0 for t in tolerances):
        raise ConfigError(f"--tolerances must be > 0, got {args.tolerances!r}")
    if args.num < 2 or args.batch_size < 1:
        raise ConfigError("--num must be >= 2 and --batch-size >= 1")
    settings_list = plan(solvers, nfes, tolerances, grids)
    if not settings_list:
        raise ConfigError(f"no setting fits: --nfe {args.nfe} has no budget divisible by the chosen solvers' evaluations per step")
    out_dir = Path(args.out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create --out-dir {out_dir} ({exc.strerror}); choose a writable folder") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--out-dir {out_dir} is not writable; choose another folder")

    from imgflow.data import load_image_data
    from imgflow.evaluation.fid import reference_statistics
    from imgflow.evaluation.runner import (
        draw_samples,
        load_flow_model,
        load_matching_classifier,
        real_baseline_fid,
        score_samples,
        write_json,
    )
    from imgflow.factory import is_class_conditional
    from imgflow.sampling import SamplerSettings

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    model, cfg, ckpt = load_flow_model(args.checkpoint, args.weights, args.device)
    classifier, info = load_matching_classifier(args.classifier, cfg, args.device)
    conditional = is_class_conditional(cfg)
    base = SamplerSettings.from_config(cfg)
    if args.guidance is not None:
        if not conditional and args.guidance != 1.0:
            raise ConfigError(f"--guidance {args.guidance} needs a class-conditional model; {ckpt.path.name} is unconditional")
        base.guidance_scale = args.guidance
    if args.sde_epsilon is not None:
        base.sde_epsilon = args.sde_epsilon
    if not conditional:
        base.guidance_scale = 1.0
    data_root = args.data_root or cfg.data.data_root
    ref = reference_statistics(info.path, classifier.features, cfg.data.dataset, data_root, cfg.data.image_size, "test",
                               resize=cfg.data.resize, download=args.download, cache_dir=args.cache_dir, device=args.device, log=say)
    floor = None
    if not args.no_baseline:
        train = load_image_data(cfg.data.dataset, data_root, train=True, image_size=cfg.data.image_size, resize=cfg.data.resize,
                                download=args.download)
        floor = real_baseline_fid(classifier, train.images, ref.stats, args.num, args.seed, args.device)

    title = (f"{ckpt.path.parent.name}/{ckpt.path.name} (step {ckpt.step}), {args.num} samples"
             + (f", guidance {base.guidance_scale:g}" if conditional else "") + f", seed {args.seed}")
    report = {"checkpoint": str(ckpt.path), "step": ckpt.step, "dataset": cfg.data.dataset, "class_conditional": conditional,
              "num_samples": args.num, "seed": args.seed, "guidance_scale": base.guidance_scale if conditional else None,
              "sde_epsilon": base.sde_epsilon, "classifier": str(info.path), "fid_real_train_images": floor, "rows": []}
    paths = {"json": out_dir / "nfe_sweep.json", "md": out_dir / "nfe_sweep.md", "png": out_dir / "nfe_sweep.png"}
    t0 = time.perf_counter()
    from imgflow.checkpoint import atomic_write_bytes

    for i, s in enumerate(settings_list):
        settings = SamplerSettings(**{**base.__dict__, "solver": s["solver"], "num_steps": s["num_steps"], "time_grid": s["time_grid"]})
        if s["tolerance"] is not None:
            settings.rtol = settings.atol = s["tolerance"]
        samples = draw_samples(model, cfg, settings, args.num, args.seed, args.batch_size, args.device)
        quality = score_samples(samples, classifier, ref.stats, args.device)
        row = {**s, "nfe": samples.nfe, "sampling_seconds": samples.seconds, **quality.to_dict()}
        row.pop("confusion", None)
        report["rows"].append(row)
        acc = f" class acc {row['class_accuracy']:.4f}" if conditional else ""
        spec = f"tol {s['tolerance']:g}" if s["tolerance"] is not None else f"{s['num_steps']} steps, {s['time_grid']}"
        say(f"[{i + 1}/{len(settings_list)}] {s['solver']:>14} {spec:<18} NFE {samples.nfe:4d}  FID(clf) {row['fid']:8.3f}{acc}"
            f"  ({samples.seconds:.0f} s)")
        try:
            write_json(paths["json"], {**report, "seconds": time.perf_counter() - t0})
            atomic_write_bytes(paths["md"], markdown_table(report["rows"], conditional, floor, f"# NFE sweep: {title}").encode())
        except OSError as exc:
            raise ConfigError(f"cannot write to {out_dir}: {exc.strerror}") from None
    plot(report["rows"], conditional, floor, paths["png"], title)
    print(markdown_table(report["rows"], conditional, floor, f"# NFE sweep: {title}"))
    print(f"wrote {paths['md']}, {paths['json']}, {paths['png']} | {time.perf_counter() - t0:.0f} s")
    return 0



if __name__ == "__main__":
    run_cli(main)
