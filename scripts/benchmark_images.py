#!/usr/bin/env python
"""Throughput of the image pipeline on this machine: training steps and sampling.

Training: images/s of the real training step (data indexing, noise, forward, backward,
clipping, Adam, EMA: `Trainer.train_step`) for each shipped config, over batch sizes, in fp32
and bf16 autocast (accelerate's mixed precision), with channels-last and torch.compile as
options. Sampling: images/s of the Euler sampler at a given NFE (with guidance when the model
is class-conditional). Random weights and data: throughput does not depend on them.

    python scripts/benchmark_images.py --configs smoke mnist lab_baseline --batches 32 64 128
    python scripts/benchmark_images.py --configs cifar10 --batches 8 --precisions fp32 --repeats 2
    python scripts/benchmark_images.py --configs mnist --batches 64 --profile   # where a step's time goes

Prints a markdown table and writes the numbers to --out (JSON).
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from imgflow.cli import ArgumentParser, run_cli  # noqa: E402
from imgflow.config import load_config  # noqa: E402
from imgflow.data import CHANNELS, ImageData  # noqa: E402


def fake_data(cfg, n: int) -> ImageData:
    g = torch.Generator().manual_seed(0)
    c, s = CHANNELS[cfg.data.dataset], cfg.data.image_size
    return ImageData(torch.randint(0, 256, (n, c, s, s), generator=g, dtype=torch.uint8), torch.arange(n) % 10)


def make_trainer(config: str, batch: int, precision: str, channels_last: bool, compile_: bool, workdir: Path):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    from imgflow.training.trainer import Trainer

    AcceleratorState._reset_state(reset_partial_state=True)
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no" if precision == "fp32" else precision)
    cfg = load_config(REPO / "configs" / f"{config}.toml", {
        "run.output_dir": str(workdir / f"{config}-{batch}-{precision}-{channels_last}-{compile_}"),
        "train.batch_size": batch, "train.channels_last": channels_last, "train.compile": compile_,
        "train.sample_every": 0, "train.grad_accum": 1,
    })
    return Trainer(cfg, data=fake_data(cfg, max(batch, 256)), accelerator=acc)


def time_training(trainer, warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        trainer.train_step()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trainer.train_step()
        times.append(time.perf_counter() - t0)
    return times


def profile_training(trainer, steps: int) -> list[dict]:
    """Share of a training step spent in each phase (the trainer's `step/*` labels) and the top operators."""
    from torch.profiler import ProfilerActivity, profile

    for _ in range(2):
        trainer.train_step()
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step()
    wall_us = (time.perf_counter() - t0) * 1e6
    events = prof.key_averages()
    phases = [{"phase": e.key, "ms_per_step": e.cpu_time_total / steps / 1000, "share": e.cpu_time_total / wall_us}
              for e in events if e.key.startswith("step/")]
    phases.sort(key=lambda r: -r["ms_per_step"])
    print(f"\nprofile: {wall_us / steps / 1000:.1f} ms/step (wall, under the profiler)")
    print("| phase | ms/step | share of wall |\n|---|---:|---:|")
    for r in phases:
        print(f"| {r['phase']} | {r['ms_per_step']:.1f} | {r['share']:.1%} |")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))
    return phases


def time_sampling(config: str, num_images: int, nfe: int, workdir: Path) -> float:
    from imgflow.factory import build_model, is_class_conditional
    from imgflow.sampling import SamplerSettings, sample_images

    cfg = load_config(REPO / "configs" / f"{config}.toml", {"run.output_dir": str(workdir / "s")})
    model = build_model(cfg)
    for p in model.parameters():  # the zero-initialised output layers would make the work trivial
        torch.nn.init.normal_(p, std=0.02)
    w = 2.0 if is_class_conditional(cfg) else 1.0
    settings = SamplerSettings(solver="euler", num_steps=nfe, guidance_scale=w)
    sample_images(model, cfg, settings, num_images=min(num_images, 8), batch_size=num_images)  # warm-up
    t0 = time.perf_counter()
    sample_images(model, cfg, settings, num_images=num_images, batch_size=num_images)
    return num_images / (time.perf_counter() - t0)


def main() -> int:
    p = ArgumentParser(description=__doc__, formatter_class=__import__("argparse").RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["smoke", "mnist", "lab_baseline"])
    p.add_argument("--batches", nargs="+", type=int, default=[32, 64, 128])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    p.add_argument("--channels-last", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--compile", nargs="+", default=["off"], choices=["off", "on"])
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--sample-nfe", type=int, default=20)
    p.add_argument("--sample-images", type=int, default=100)
    p.add_argument("--profile", action="store_true", help="profile the first config/batch (fp32) and print where the step's time goes")
    p.add_argument("--profile-steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    p.add_argument("--out", default="outputs/benchmarks/images.json")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.profile:
            cl = args.channels_last[0] == "on"
            trainer = make_trainer(args.configs[0], args.batches[0], "fp32", cl, False, work)
            phases = profile_training(trainer, args.profile_steps)
            rows.append({"kind": "profile", "config": args.configs[0], "batch": args.batches[0], "channels_last": cl, "phases": phases})
            args.configs = []
        for config in args.configs:
            for batch in args.batches:
                for precision in args.precisions:
                    for cl in args.channels_last:
                        for comp in args.compile:
                            trainer = make_trainer(config, batch, precision, cl == "on", comp == "on", work)
                            times = time_training(trainer, args.warmup, args.repeats)
                            med = statistics.median(times)
                            row = {"kind": "train", "config": config, "batch": batch, "precision": precision,
                                   "channels_last": cl == "on", "compile": comp == "on", "step_s": med,
                                   "images_per_s": batch / med, "parameters": sum(q.numel() for q in trainer.model.parameters())}
                            rows.append(row)
                            print(f"train {config:14s} batch {batch:4d} {precision:5s} cl={cl:3s} compile={comp:3s} "
                                  f"{med * 1000:8.1f} ms/step {batch / med:8.1f} img/s", flush=True)
            if args.sample_nfe:
                rate = time_sampling(config, args.sample_images, args.sample_nfe, work)
                rows.append({"kind": "sample", "config": config, "nfe": args.sample_nfe, "images": args.sample_images, "images_per_s": rate})
                print(f"sample {config:14s} {args.sample_images} images, Euler NFE {args.sample_nfe}: {rate:.1f} img/s", flush=True)
    machine = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "processor": platform.processor() or platform.machine(), "cpus": __import__("os").cpu_count()}
    print("\n| config | params | batch | precision | channels-last | compile | ms/step | images/s |")
    print("|---|---:|---:|---|---|---|---:|---:|")
    for r in rows:
        if r["kind"] == "train":
            print(f"| {r['config']} | {r['parameters']:,} | {r['batch']} | {r['precision']} | {r['channels_last']} | {r['compile']} | {r['step_s'] * 1000:.0f} | {r['images_per_s']:.1f} |")
    print("\n| config | sampler | images | images/s |")
    print("|---|---|---:|---:|")
    for r in rows:
        if r["kind"] == "sample":
            print(f"| {r['config']} | Euler, NFE {r['nfe']} | {r['images']} | {r['images_per_s']:.1f} |")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "rows": rows}, indent=2))
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    run_cli(main)
