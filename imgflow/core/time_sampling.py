"""Training-time distributions: which times t in [0, 1] a loss is evaluated at.

"uniform" draws t ~ U[0, 1); "logit_normal" draws t = sigmoid(mean + std * n), n ~ N(0, 1),
which spends more training on the middle times where the velocity is hardest to predict
(Esser et al. 2024; mean 0, std 1 is their default). Both are (n,) float32 tensors drawn from
`generator` on `device`, so a trainer seeded by (seed, step) draws the same times on resume.
"""

from __future__ import annotations

import torch
from torch import Tensor

from imgflow.core.registry import Registry


def uniform_times(n: int, *, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None,
                  device: torch.device | str | None = None) -> Tensor:
    """t ~ U[0, 1) (mean and std are not used)."""
    return torch.rand(n, generator=generator, device=device)


def logit_normal_times(n: int, *, mean: float = 0.0, std: float = 1.0, generator: torch.Generator | None = None,
                       device: torch.device | str | None = None) -> Tensor:
    """t = sigmoid(mean + std * n), n ~ N(0, 1)."""
    return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))


#: the training-time distributions by the name configs use (flow.flow_matching.time_sampling)
TIME_SAMPLINGS = Registry("time sampling", "flow.flow_matching.time_sampling", [("uniform", uniform_times), ("logit_normal", logit_normal_times)])


def sample_times(
    n: int,
    kind: str = "uniform",
    *,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """n training times in [0, 1] from the named distribution of TIME_SAMPLINGS."""
    return TIME_SAMPLINGS[kind](n, mean=mean, std=std, generator=generator, device=device)


# --- (t, r) pairs of a flow map u(x, t, r), 0 <= t <= r <= 1 ------------------------------------

def _draw(n: int, mean: float, std: float, generator: torch.Generator | None, device: torch.device | str | None) -> Tensor:
    """n times from logit-normal(mean, std), or U[0, 1) when std = 0."""
    return sample_times(n, "uniform" if std == 0 else "logit_normal", mean=mean, std=std, generator=generator, device=device)


def sorted_pairs(n: int, *, mean: float = 0.4, std: float = 1.0, r_mean: float = 0.0, r_std: float = 0.0,
                 generator: torch.Generator | None = None, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """(t, r) = (min, max) of two draws from one distribution: logit-normal(mean, std), or uniform when std = 0.

    The MeanFlow paper's sampler: both times from logit-normal(-0.4, 1) in its convention (t = 1 noise),
    mirrored into ours (t = 0 noise) mean +0.4. r_mean / r_std are not used (they belong to "independent").
    """
    a, b = _draw(n, mean, std, generator, device), _draw(n, mean, std, generator, device)
    return torch.minimum(a, b), torch.maximum(a, b)


def independent_pairs(n: int, *, mean: float = -0.4, std: float = 1.0, r_mean: float = 2.0, r_std: float = 1.0,
                      generator: torch.Generator | None = None, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """t ~ logit-normal(mean, std) and r ~ logit-normal(r_mean, r_std) drawn independently, then ordered (t <= r).

    py-meanflow's "v1" sampler (its CIFAR-10 recipe), mirrored into our convention: a logit mean m there
    (t = 1 noise) is -m here, so an r drawn near the data end there (a negative mean) has a positive
    r_mean here. With r_mean well above mean most pairs span a long interval that ends near the data,
    the jumps a 1- or 2-step sampler takes. std = 0 (or r_std = 0) draws that time uniformly.
    """
    t, r = _draw(n, mean, std, generator, device), _draw(n, r_mean, r_std, generator, device)
    return torch.minimum(t, r), torch.maximum(t, r)


#: the (t, r) samplers by the name configs use (flow.mean_flow.time_sampler)
TIME_PAIR_SAMPLERS = Registry("time-pair sampler", "flow.mean_flow.time_sampler", [("sorted", sorted_pairs), ("independent", independent_pairs)])


def sample_time_pairs(n: int, kind: str = "sorted", *, mean: float = 0.4, std: float = 1.0, r_mean: float = 2.0,
                      r_std: float = 1.0, full_jump_fraction: float = 0.0, equal_fraction: float = 0.0,
                      generator: torch.Generator | None = None, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """n pairs (t, r), each (n,), 0 <= t <= r <= 1, from the named sampler of TIME_PAIR_SAMPLERS.

    full_jump_fraction of the pairs (each independently) become exact full jumps (t, r) = (0, 1), the
    interval a one-step sample uses; then the first round(equal_fraction * n) pairs get r = t (flow
    matching rows: a loss can skip their JVP because it knows where they are without reading the device).
    """
    t, r = TIME_PAIR_SAMPLERS[kind](n, mean=mean, std=std, r_mean=r_mean, r_std=r_std, generator=generator, device=device)
    if full_jump_fraction > 0:
        full = torch.rand(n, generator=generator, device=device) < full_jump_fraction
        t, r = torch.where(full, torch.zeros_like(t), t), torch.where(full, torch.ones_like(r), r)
    return t, with_equal_rows(t, r, round(equal_fraction * n))


def with_equal_rows(t: Tensor, r: Tensor, num_equal: int) -> Tensor:
    """r with its first num_equal entries replaced by t's (those rows train the instantaneous velocity)."""
    if num_equal <= 0:
        return r
    return torch.cat([t[:num_equal], r[num_equal:]])
