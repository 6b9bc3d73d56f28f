#!/usr/bin/env python
"""The FAQ's numbers: the irreducible part of the flow-matching loss for the lab's 5-mode mixture (exact marginal
field, Monte Carlo) against the training curve of the lab's MLP (toy.train_flow_matching), and that MLP's
excess over it (its mean squared distance from the exact field, the part training reduces).

    python scripts/irreducible_loss.py --out docs/images/faq_irreducible_loss.png
"""

from __future__ import annotations

import argparse
import time

import torch

from imgflow.core import GaussianPath, LinearSchedule
from toy import GaussianMixture, MLPVectorField, flow_matching_excess, irreducible_flow_matching_loss, train_flow_matching
from toy.irreducible import plot_loss_against_floor


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/images/faq_irreducible_loss.png")
    p.add_argument("--iterations", type=int, default=3000)
    p.add_argument("--samples", type=int, default=400_000)
    args = p.parse_args()
    torch.set_num_threads(1)
    mixture = GaussianMixture.symmetric_2D(nmodes=5, std=0.5, scale=5.0)
    path = GaussianPath(LinearSchedule(), p_data=mixture)
    floor = irreducible_flow_matching_loss(mixture, path, args.samples, seed=0)
    start = time.perf_counter()
    torch.manual_seed(0)  # the initial weights (train's seed covers only the training draws)
    model = MLPVectorField(2, (64, 64, 64, 64))
    history = train_flow_matching(model, path, num_iterations=args.iterations, batch_size=500, lr=1e-2, seed=0, progress=False)
    seconds = time.perf_counter() - start
    last = torch.tensor(history[-200:])
    print(f"irreducible part: {floor}")
    print(f"training ({args.iterations} steps of batch 500, {seconds:.0f} s): mean loss of the last 200 steps "
          f"{float(last.mean()):.4f} (excess over the floor {float(last.mean()) - floor.value:.4f}); first step {history[0]:.3f}")
    excess = flow_matching_excess(model, mixture, path, args.samples, seed=0)
    print(f"the trained model's excess E|u_theta - u_t|^2 / D (what training reduces; exact field): {excess}")
    print(f"wrote {plot_loss_against_floor(history, floor, args.out)}")


if __name__ == "__main__":
    main()
