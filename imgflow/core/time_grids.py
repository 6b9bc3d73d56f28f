"""Time grids for the solvers: (T,) tensors from t_start to t_end."""

from __future__ import annotations

import torch
from torch import Tensor


def uniform_time_grid(num_steps: int, t_start: float = 0.0, t_end: float = 1.0) -> Tensor:
    """num_steps equal steps: a (num_steps + 1,) float32 tensor."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return torch.linspace(t_start, t_end, num_steps + 1)
