#!/usr/bin/env python
"""The two GIFs of the docs: the exact flow of the lab's 2-D mixture (particles over the density p_t and the
marginal field u_t), and the shipped MNIST model denoising 20 digits (Sampler trajectories).

    python scripts/doc_animations.py --out docs/images
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from imgflow import Sampler
from imgflow.core import GaussianPath, LearnedVectorFieldODE, make_solver, schedule_from_name, uniform_time_grid
from toy import GaussianMixture, GaussianMixtureMarginals
from toy.animation import animate_particles


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/images")
    args = p.parse_args()
    out = Path(args.out)
    torch.manual_seed(0)
    mixture = GaussianMixture.symmetric_2D(nmodes=5, std=0.5, scale=5.0)
    exact = GaussianMixtureMarginals(mixture, GaussianPath(schedule_from_name("linear")))
    ts = uniform_time_grid(20)
    traj = make_solver("rk4", LearnedVectorFieldODE(exact)).simulate_with_trajectory(torch.randn(500, 2), ts)
    path = animate_particles(out / "flow_2d.gif", traj, ts, density=exact.log_density, field=exact.velocity,
                             bounds=(-8, 8, -8, 8), title="exact flow of a 5-mode mixture", fps=8, hold_last=1.5)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    samples = Sampler.from_pretrained("mnist").sample(20, steps=20, seed=0, trajectory=11)
    path = samples.save_gif(out / "mnist_denoising.gif", nrow=10, fps=8, scale=2)
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB), {samples.settings.describe()}")


if __name__ == "__main__":
    main()
