"""The sampling interface shared by sources, data distributions and densities."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class Sampleable(Protocol):
    """Anything that draws n samples of shape (n, ...)."""

    def sample(self, num_samples: int) -> Tensor: ...


class StandardNormal:
    """N(0, I) over tensors of a fixed per-sample shape, e.g. (2,) or (1, 28, 28)."""

    def __init__(self, shape: tuple[int, ...], device: torch.device | str = "cpu") -> None:
        self.shape = tuple(shape)
        self.device = torch.device(device)

    def sample(self, num_samples: int) -> Tensor:
        return torch.randn((num_samples, *self.shape), device=self.device)

    def log_density(self, x: Tensor) -> Tensor:
        """log N(x; 0, I) per sample, shape (B,)."""
        d = x[0].numel()
        sq = x.flatten(1).pow(2).sum(1)
        return -0.5 * sq - 0.5 * d * torch.log(torch.tensor(2 * torch.pi, dtype=x.dtype))

    def score(self, x: Tensor) -> Tensor:
        """grad log N(x; 0, I) = -x."""
        return -x
