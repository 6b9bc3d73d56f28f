"""Training-time distributions: which times t in [0, 1] a loss is evaluated at.

"uniform" draws t ~ U[0, 1); "logit_normal" draws t = sigmoid(mean + std * n), n ~ N(0, 1),
which spends more training on the middle times where the velocity is hardest to predict
(Esser et al. 2024; mean 0, std 1 is their default). Both are (n,) float32 tensors drawn from
`generator` on `device`, so a trainer seeded by (seed, step) draws the same times on resume.
"""

from __future__ import annotations

import torch
from torch import Tensor

TIME_SAMPLINGS: tuple[str, ...] = ("uniform", "logit_normal")


def sample_times(
    n: int,
    kind: str = "uniform",
    *,
    mean: float = 0.0,
    std: float = 1.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """n training times in [0, 1] from the named distribution."""
    if kind == "uniform":
        return torch.rand(n, generator=generator, device=device)
    if kind == "logit_normal":
        return torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))
    raise ValueError(f"unknown time sampling {kind!r}; choose one of {', '.join(TIME_SAMPLINGS)}")
