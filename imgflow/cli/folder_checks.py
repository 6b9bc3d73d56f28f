"""The folder path on real data: the cost of its cache, and parity with the built-in loader.

    python scripts/folder_checks.py benchmark --data-root ../shared/data --workdir outputs/folder_check
    python scripts/folder_checks.py parity --data-root ../shared/data --workdir outputs/folder_check --steps 300

benchmark: writes the Fashion-MNIST training split (60,000 images) as a class-per-folder tree of PNGs and
times the folder dataset's first start (list + convert everything into the cache) and second start (list +
map the cache). parity: trains configs/mnist.toml's recipe on that folder and on the built-in loader
(--steps steps, same seed) and checks that the pixels and the loss curves are identical. Both print a table
and write their numbers to <workdir>/<benchmark|parity>.json.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from imgflow.cli import ArgumentParser, add_runtime_arguments, apply_runtime_arguments, say


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    p = ArgumentParser(prog="folder_checks.py", description=__doc__)
    p.add_argument("check", choices=("benchmark", "parity"))
    p.add_argument("--data-root", required=True, help="folder holding FashionMNIST/raw (torchvision layout)")
    p.add_argument("--dataset", default="fashion_mnist", choices=("fashion_mnist", "mnist"))
    p.add_argument("--workdir", default="outputs/folder_check")
    p.add_argument("--num", type=int, default=0, help="benchmark: use the first N training images (0 = all)")
    p.add_argument("--image-size", type=int, default=28, help="benchmark: the cache's image size (28 keeps them as they are)")
    p.add_argument("--workers", type=int, default=0, help="benchmark: conversion processes (0 = the available cores)")
    p.add_argument("--steps", type=int, default=300, help="parity: training steps of each run")
    p.add_argument("--config", default="configs/mnist.toml", help="parity: the recipe both runs train")
    add_runtime_arguments(p, device=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    apply_runtime_arguments(args)

    from imgflow.config import load_config
    from imgflow.data import load_image_data
    from imgflow.experiments.benchmark import machine_info, resolve_config
    from imgflow.experiments.folder_parity import folder_cache_benchmark, folder_parity
    from imgflow.files import write_json

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    builtin = load_image_data(args.dataset, args.data_root, train=True, download=False)
    if args.check == "benchmark":
        source = builtin if args.num <= 0 else builtin.subset(__import__("torch").arange(min(args.num, len(builtin))))
        cfg = load_config(None, {"data.image_size": args.image_size})
        result = folder_cache_benchmark(source, workdir, cfg, workers=args.workers, progress=not args.no_progress, log=say)
        print("| images | size | workers | write PNGs | first start (convert) | second start | of which listing files | cache |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {result.images:,} | {result.image_size} | {result.workers} | {result.write_pngs_s:.1f} s | {result.first_start_s:.1f} s | "
              f"{result.second_start_s:.2f} s | {result.scan_s:.2f} s | {result.cache_bytes / 2**20:.1f} MiB |")
        write_json(workdir / "benchmark.json", {"machine": machine_info(), **result.to_dict()})
    else:
        pngs = workdir / "pngs"
        if not pngs.is_dir():
            from imgflow.data import export_image_folder

            export_image_folder(builtin, pngs, progress=not args.no_progress)
        cfg = load_config(resolve_config(args.config), {"data.dataset": args.dataset, "data.data_root": args.data_root})
        report = folder_parity(cfg, builtin, pngs, workdir, steps=args.steps, progress=not args.no_progress, log=say)
        print(f"pixels identical: {report.same_pixels}; labels identical: {report.same_labels}; loss curves identical: "
              f"{report.identical_loss_curves} (largest difference {report.max_abs_loss_difference:g} over {len(report.losses_folder)} "
              f"logged points); {report.seconds_builtin:.0f} s built-in, {report.seconds_folder:.0f} s folder")
        write_json(workdir / "parity.json", {"machine": machine_info(), **report.to_dict()})
    return 0
