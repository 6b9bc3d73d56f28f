#!/usr/bin/env python
"""Fixed wall-clock budget comparison of training recipes on MNIST.

Each run trains from scratch for --minutes of wall clock (scripts/train_images.py with
train.max_minutes; the clock starts when the first step starts), then is judged by the
project classifier at several NFE: classifier FID against the test split and class accuracy of
class-conditional samples (balanced labels, per-sample seeds, the run's guidance scale and
solver; steps = NFE / evaluations per step). Samples of a model trained at another size (the
lab baseline's 32x32 resized MNIST) are resized to the classifier's 28x28 with antialiasing; the
FID of real images sent through the same round trip is reported as that run's floor.

    python scripts/budget_comparison.py --minutes 15 --data-root ../shared/data \
        --classifier runs/classifiers/mnist-28.safetensors \
        --run ours=configs/mnist.toml --run baseline=configs/lab_baseline.toml \
        --nfe 10,20,50,100 --num 1000 --out outputs/budget

Writes <out>/<name>/ (the run), <out>/<name>/grid-nfe<N>.png, <out>/results.json and
<out>/results.md. --skip-train re-evaluates existing runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imgflow.cli import ArgumentParser, run_cli  # noqa: E402
from imgflow.config import ConfigError  # noqa: E402

EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4, "euler_maruyama": 1}


def train(name: str, config: str, minutes: float, args, out: Path) -> None:
    cmd = [
        sys.executable, str(REPO / "scripts/train_images.py"), "--config", config,
        "--run.output_dir", str(out / name), "--data.data_root", args.data_root, "--data.download", "false",
        "--train.max_minutes", str(minutes), "--train.steps", "100000000", "--train.sample_every", "0",
        "--train.checkpoint_every", "100000000", "--no-progress", "--threads", str(args.threads), *args.train_arg,
    ]
    if args.launcher == "torchrun2":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *cmd[1:]]
    print(f"[{name}] training {minutes} min: {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, check=True)


def to_classifier_size(images: torch.Tensor, size: int) -> torch.Tensor:
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True).clamp(-1, 1)


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, help="NAME=CONFIG.toml (repeatable)")
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--data-root", required=True)
    p.add_argument("--classifier", required=True)
    p.add_argument("--nfe", default="10,20,50,100")
    p.add_argument("--num", type=int, default=1000, help="samples per NFE setting")
    p.add_argument("--out", default="outputs/budget")
    p.add_argument("--skip-train", action="store_true")
    p.add_argument("--launcher", choices=["python", "torchrun2"], default="python",
                   help="torchrun2: two CPU processes (DDP) of one thread each")
    p.add_argument("--threads", type=int, default=0, help="torch threads for training and evaluation (0 = torch's default)")
    p.add_argument("--train-arg", action="append", default=[], help="extra argument passed to train_images.py (repeatable)")
    args = p.parse_args()
    runs = []
    for spec in args.run:
        name, _, config = spec.partition("=")
        if not name or not Path(config).is_file():
            raise ConfigError(f"--run must be NAME=CONFIG.toml with an existing file, got {spec!r}")
        runs.append((name, config))
    nfes = [int(v) for v in args.nfe.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.threads:
        torch.set_num_threads(args.threads)

    from imgflow.data import load_image_data
    from imgflow.evaluation.class_accuracy import balanced_labels
    from imgflow.evaluation.classifier import extract_features, load_classifier
    from imgflow.evaluation.fid import (
        feature_statistics,
        frechet_distance,
        reference_statistics,
    )
    from imgflow.evaluation.runner import (
        SampleSet,
        load_flow_model,
        real_baseline_fid,
        score_samples,
    )
    from imgflow.sampling import SamplerSettings, sample_images, save_grid
    from imgflow.training.metrics_log import read_metrics

    if not args.skip_train:
        for name, config in runs:
            train(name, config, args.minutes, args, out)

    clf, info = load_classifier(args.classifier)
    feats = lambda x: clf.features(x)  # noqa: E731
    ref = reference_statistics(args.classifier, feats, info.dataset, args.data_root, info.image_size).stats
    real = load_image_data(info.dataset, args.data_root, train=True, image_size=info.image_size, download=False)
    results = {"minutes": args.minutes, "num": args.num, "classifier": str(args.classifier), "runs": {}}
    floor = real_baseline_fid(clf, real.images, ref, args.num)
    results["fid_floor_real_images"] = floor
    print(f"real training images ({args.num}) vs test: FID(clf) {floor:.3f}", flush=True)
    for name, config in runs:
        model, cfg, ckpt = load_flow_model(out / name)
        metrics = read_metrics(out / name)
        last = metrics[-1] if metrics else {}
        entry = {"config": config, "step": ckpt.step, "train_seconds": last.get("elapsed_s"),
                 "images_seen": ckpt.step * cfg.train.batch_size, "final_loss": last.get("loss"), "rows": []}
        size = cfg.data.image_size
        if size != info.image_size:
            round_trip = load_image_data(info.dataset, args.data_root, train=True, image_size=size, resize=cfg.data.resize, download=False)
            idx = torch.randperm(len(round_trip), generator=torch.Generator().manual_seed(0))[: args.num]
            x = to_classifier_size(round_trip.images[idx].float() / 127.5 - 1, info.image_size)
            entry["fid_floor_resized_real_images"] = frechet_distance(feature_statistics(extract_features(clf, x)), ref)
            print(f"[{name}] real images through the {info.image_size}->{size}->{info.image_size} round trip: FID(clf) "
                  f"{entry['fid_floor_resized_real_images']:.3f}", flush=True)
        solver = cfg.sample.solver
        for nfe in nfes:
            per = EVALS_PER_STEP.get(solver, 1)
            if nfe % per:
                continue
            settings = SamplerSettings(solver=solver, num_steps=nfe // per, time_grid=cfg.sample.time_grid,
                                       guidance_scale=cfg.sample.guidance_scale, sde_epsilon=cfg.sample.sde_epsilon)
            labels = balanced_labels(args.num)
            t0 = time.perf_counter()
            images, labels, used = sample_images(model, cfg, settings, args.num, seed=0, labels=labels)
            seconds = time.perf_counter() - t0
            images = to_classifier_size(images, info.image_size)
            quality = score_samples(SampleSet(images, labels, used, seconds), clf, ref)
            row = {"nfe": used, "solver": solver, "steps": settings.num_steps, "time_grid": settings.time_grid,
                   "guidance": settings.guidance_scale, "fid": quality.fid,
                   "class_accuracy": quality.class_accuracy.accuracy if quality.class_accuracy else None,
                   "sampling_seconds": seconds}
            entry["rows"].append(row)
            save_grid(images[:100], out / name / f"grid-nfe{used}.png", nrow=10)
            print(f"[{name}] NFE {used:3d} ({solver} {settings.num_steps} steps, {settings.time_grid}, w={settings.guidance_scale:g}): "
                  f"FID(clf) {quality.fid:8.3f}  class acc {row['class_accuracy']:.4f}  ({seconds:.0f} s)", flush=True)
        results["runs"][name] = entry
        (out / "results.json").write_text(json.dumps(results, indent=2))
    lines = [f"# {args.minutes:g}-minute budget on MNIST ({args.num} samples per row; real-image floor FID(clf) {floor:.3f})", "",
             "| run | steps | images seen | NFE | sampler | FID(clf) | class acc |", "|---|---:|---:|---:|---|---:|---:|"]
    for name, e in results["runs"].items():
        for r in e["rows"]:
            lines.append(f"| {name} | {e['step']} | {e['images_seen']} | {r['nfe']} | {r['solver']} x{r['steps']} {r['time_grid']}, w={r['guidance']:g} | "
                         f"{r['fid']:.3f} | {r['class_accuracy']:.4f} |")
    (out / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    run_cli(main)
