"""Sample distances and error measures used by the validations (one implementation each)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "energy_distance",
    "excess_kurtosis",
    "null_distance_band",
    "relative_l2",
    "sliced_wasserstein",
]


def _mean_pairwise(x: Tensor, y: Tensor, exclude_diagonal: bool, chunk: int = 4096) -> Tensor:
    """Mean Euclidean distance |x_i - y_j| over pairs, in float64, in row chunks."""
    x, y = x.double(), y.double()
    total = torch.zeros((), dtype=torch.float64)
    for i in range(0, x.shape[0], chunk):
        total = total + torch.cdist(x[i : i + chunk], y).sum()
    n, m = x.shape[0], y.shape[0]
    # the diagonal of |x_i - x_i| is zero, so excluding it only changes the count
    return total / (n * (n - 1) if exclude_diagonal else n * m)


def energy_distance(x: Tensor, y: Tensor) -> Tensor:
    """Unbiased energy distance 2 E|X - Y| - E|X - X'| - E|Y - Y'| between samples x (n, D), y (m, D).

    U-statistics (no i = j pairs), so its expectation is the population energy distance,
    which is >= 0 and = 0 iff the laws are equal; a single estimate can be slightly negative.
    Units: length. Cost O((n + m)^2).
    """
    return 2 * _mean_pairwise(x, y, False) - _mean_pairwise(x, x, True) - _mean_pairwise(y, y, True)


def sliced_wasserstein(x: Tensor, y: Tensor, num_projections: int = 256, seed: int = 0) -> Tensor:
    """Sliced 1-Wasserstein distance averaged over random directions (n = m required). Units: length."""
    if x.shape != y.shape:
        raise ValueError("sliced_wasserstein needs samples of equal shape")
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(x.shape[1], num_projections, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x.double() @ dirs, dim=0)
    py, _ = torch.sort(y.double() @ dirs, dim=0)
    return (px - py).abs().mean()


def null_distance_band(
    sample_a: Callable[[int], Tensor],
    sample_b: Callable[[int], Tensor],
    n: int,
    repeats: int,
    k: float = 4.0,
    distance: Callable[[Tensor, Tensor], Tensor] = energy_distance,
) -> dict[str, float]:
    """Distances between `repeats` independent pairs (sample_a(n), sample_b(n)).

    With sample_a = sample_b = the target this is the distance's null distribution at size n:
    what a perfect sampler would score. Returns mean, std (over repeats) and the band
    mean + k std.
    """
    d = torch.stack([distance(sample_a(n), sample_b(n)) for _ in range(repeats)])
    mean, std = d.mean().item(), d.std().item()
    return {"mean": mean, "std": std, "band": mean + k * std, "k": k, "repeats": repeats, "n": n}


def relative_l2(pred: Tensor, target: Tensor) -> float:
    """sqrt( sum |pred - target|^2 / sum |target|^2 ) over the whole batch."""
    num = (pred.double() - target.double()).pow(2).sum()
    den = target.double().pow(2).sum()
    return math.sqrt((num / den).item())


def excess_kurtosis(x: Tensor) -> float:
    """Sample excess kurtosis m4 / m2^2 - 3 of a flat sample (0 for a Gaussian; SE ~ sqrt(24 / n))."""
    x = x.double().reshape(-1)
    c = x - x.mean()
    m2 = c.pow(2).mean()
    m4 = c.pow(4).mean()
    return (m4 / m2**2 - 3.0).item()
