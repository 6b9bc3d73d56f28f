"""Benchmark the toy lab's hot paths on this machine; prints a table and writes JSON.

1. Training-step throughput (iterations/s) of one flow-matching step = core
   ``flow_matching_loss`` on a batch + Adam step, for
   - MLP 3 x 512 ReLU at batch 2500,
   - MLP 4 x 64 SiLU at batch 1000,
   next to the per-sample ``torch.func.vmap`` formulation of the same step as the
   stochastic-interpolant tutorial writes it: a loss for ONE sample (noise x0, data x1, t) that builds
   x_t, calls the network on a batch of one (through ``torch.func.functional_call``) and
   returns the squared error, vmapped over the batch (randomness="different"), then mean and
   backward and the same Adam step. Both see the same data and the same parameters.
2. Sampling throughput (points/s): 20 000 points through 100 Euler steps of the learned ODE
   (core EulerSolver + LearnedVectorFieldODE) under ``torch.inference_mode``.

Each training measurement: warm-up steps, then `repeats` timed runs of `iters` steps; sampling:
a 2-step warm-up, then `sampling_repeats` timed runs. The median rate is reported.

    python scripts/benchmark_toy.py [--threads 1,2] [--repeats 5] [--out outputs/benchmark_toy.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.func import functional_call, vmap

from imgflow.core import EulerSolver, LearnedVectorFieldODE, LinearPath, flow_matching_loss, uniform_time_grid
from toy.densities import GaussianMixture
from toy.models import MLPVectorField

SETTINGS = [
    {"name": "MLP 3x512 ReLU, batch 2500", "hiddens": (512, 512, 512), "activation": "relu", "batch": 2500},
    {"name": "MLP 4x64 SiLU, batch 1000", "hiddens": (64, 64, 64, 64), "activation": "silu", "batch": 1000},
]


def _batch(batch: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    data = GaussianMixture.symmetric_2D(5, 0.5, 5.0)
    data_points = data.sample(batch, generator=gen)
    noise = torch.randn(batch, 2, generator=gen)
    t = torch.rand(batch, generator=gen)
    return data_points, noise, t


def ours_step(model, opt, path, data, noise, t):
    """The batched step the lab trains with."""
    loss = flow_matching_loss(model, path, data, t, noise=noise)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss


def make_vmap_step(model, opt):
    """The tutorial's per-sample formulation of the same (linear-path) flow-matching step."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())

    def loss_per_sample(params, x0, x1, t):
        xt = (1 - t) * x0 + t * x1  # one sample: x0 (2,), x1 (2,), t ()
        dtIt = x1 - x0
        xt, tt = xt.unsqueeze(0), t.unsqueeze(0)  # a batch of one, as the tutorial does
        bt = functional_call(model, (params, buffers), (xt, tt))
        return torch.mean((bt[0] - dtIt) ** 2)

    batched = vmap(loss_per_sample, in_dims=(None, 0, 0, 0), randomness="different")

    def step(data, noise, t):
        loss = batched(params, noise, data, t).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    return step


def _time(fn, iters: int, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        rates.append(iters / (time.perf_counter() - t0))
    return statistics.median(rates)


def run(threads: int, repeats: int, sampling_repeats: int, quick: bool) -> list[dict]:
    torch.set_num_threads(threads)
    rows = []
    path = LinearPath()
    for s in SETTINGS:
        gen = torch.Generator().manual_seed(0)
        data, noise, t = _batch(s["batch"], gen)
        big = s["hiddens"][0] >= 512
        iters = (5 if big else 20) if quick else (20 if big else 100)
        # same initial weights for both formulations; the two losses agree to rounding
        torch.manual_seed(0)
        m1 = MLPVectorField(2, s["hiddens"], s["activation"])
        m2 = MLPVectorField(2, s["hiddens"], s["activation"])
        m2.load_state_dict(m1.state_dict())
        o1, o2 = torch.optim.Adam(m1.parameters(), 1e-3), torch.optim.Adam(m2.parameters(), 1e-3)
        vstep = make_vmap_step(m2, o2)
        with torch.no_grad():
            l_ours = flow_matching_loss(m1, path, data, t, noise=noise).item()
            l_vmap = vmap(lambda a, b, c: torch.mean((m2(((1 - c) * a + c * b)[None], c[None])[0] - (b - a)) ** 2))(noise, data, t).mean().item()
        ours = _time(lambda: ours_step(m1, o1, path, data, noise, t), iters, max(3, iters // 5), repeats)
        vm = _time(lambda: vstep(data, noise, t), iters, max(3, iters // 5), repeats)
        rows.append(
            {
                "setting": s["name"],
                "threads": threads,
                "ours_it_per_s": ours,
                "vmap_it_per_s": vm,
                "speedup": ours / vm,
                "loss_ours": l_ours,
                "loss_vmap": l_vmap,
            }
        )
        # sampling: 20k points, 100 Euler steps
        n, steps = 20_000, 100
        xs = torch.randn(n, 2, generator=gen)
        solver = EulerSolver(LearnedVectorFieldODE(m1))
        grid = uniform_time_grid(steps)

        def sample(g=grid):
            with torch.inference_mode():
                solver.simulate(xs, g)

        sample(uniform_time_grid(2))  # warm-up
        rate = _time(sample, 1, 0, sampling_repeats)
        rows[-1]["sampling_points_per_s"] = rate * n
        rows[-1]["sampling_seconds"] = 1.0 / rate
        print(f"  done: {s['name']} threads={threads}", flush=True)
    return rows


def format_table(rows: list[dict]) -> str:
    head = "| setting | threads | ours (it/s) | per-sample vmap (it/s) | speed-up | sampling 20k x 100 Euler (points/s) |"
    sep = "|---|---|---|---|---|---|"
    lines = [head, sep]
    for r in rows:
        lines.append(
            f"| {r['setting']} | {r['threads']} | {r['ours_it_per_s']:.1f} | {r['vmap_it_per_s']:.1f} | "
            f"{r['speedup']:.2f}x | {r['sampling_points_per_s']:,.0f} ({r['sampling_seconds']:.2f} s) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="benchmark_toy.py", description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts to measure")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of each training-step measurement")
    p.add_argument("--sampling-repeats", type=int, default=3, help="timed repeats of each sampling run")
    p.add_argument("--quick", action="store_true", help="fewer iterations per timing (smoke test)")
    p.add_argument("--out", default="outputs/benchmark_toy.json")
    args = p.parse_args(argv)
    rows = []
    for th in [int(x) for x in args.threads.split(",")]:
        rows += run(th, args.repeats, args.sampling_repeats, args.quick)
    meta = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "repeats": args.repeats,
        "sampling_repeats": args.sampling_repeats,
    }
    print(format_table(rows))
    print(f"torch {meta['torch']}, {meta['cpu_count']} CPUs, load average at end {tuple(round(x, 2) for x in meta['load_average_at_end'])}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"wrote {out}")
    return 0
