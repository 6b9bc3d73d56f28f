"""Time grids for the solvers: (T,) tensors from t_start to t_end, and the named grids samplers use."""

from __future__ import annotations

import torch
from torch import Tensor

from imgflow.core.registry import Registry

#: named grids: the power of `power_time_grid` (1 = uniform; 2 = "late", steps shrink towards the data)
TIME_GRIDS: Registry[float] = Registry("time grid", "sample.time_grid", [("uniform", 1.0), ("late", 2.0)])


def uniform_time_grid(num_steps: int, t_start: float = 0.0, t_end: float = 1.0) -> Tensor:
    """num_steps equal steps: a (num_steps + 1,) float32 tensor."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return torch.linspace(t_start, t_end, num_steps + 1)


def power_time_grid(num_steps: int, power: float = 2.0, t_start: float = 0.0, t_end: float = 1.0) -> Tensor:
    """Steps that shrink towards t_end: t = t_start + (t_end - t_start)(1 - (1 - s)^power), s uniform.

    power = 1 is uniform; power > 1 spends more steps near the data end (t = 1), where the
    velocity of a flow trained on images changes fastest.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if power <= 0:
        raise ValueError(f"power must be > 0, got {power}")
    s = torch.linspace(0.0, 1.0, num_steps + 1, dtype=torch.float64)
    grid = t_start + (t_end - t_start) * (1.0 - (1.0 - s) ** power)
    return grid.float()


def named_time_grid(name: str, num_steps: int, t_start: float = 0.0, t_end: float = 1.0) -> Tensor:
    """One of TIME_GRIDS ('uniform', 'late') with num_steps steps from t_start to t_end."""
    return power_time_grid(num_steps, TIME_GRIDS[name], t_start, t_end)
