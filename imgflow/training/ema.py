"""Exponential moving average of the weights, updated without reading anything back from the device."""

from __future__ import annotations

import copy

import torch
from torch import nn


def ema_decay_at(decay: float, num_updates: int, warmup: bool = True) -> float:
    """The decay used for update number n (1-based): min(decay, (1 + n) / (10 + n)) with warm-up.

    The warm-up keeps the average from being dominated by the random initialisation in
    short runs; long runs reach the configured decay after ~10 / (1 - decay) updates.
    """
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates)) if warmup else decay


class EMA:
    """ema = d ema + (1 - d) param for floating tensors (parameters and buffers), a copy for integer buffers.

    The update count lives on the host (`num_updates`), so the decay of each update is a Python
    float: unlike torch's AveragedModel, whose counter is a device tensor compared in Python,
    no update waits for the device. `module` is the averaged copy of the model (no gradients).
    """

    def __init__(self, model: nn.Module, decay: float, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self.warmup = warmup
        self.num_updates = 0

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        own = list(self.module.parameters()) + list(self.module.buffers())
        src = list(model.parameters()) + list(model.buffers())
        floating = [(e, s) for e, s in zip(own, src) if e.is_floating_point()]
        other = [(e, s) for e, s in zip(own, src) if not e.is_floating_point()]
        return [e for e, _ in floating], [s.detach() for _, s in floating], [e for e, _ in other], [s for _, s in other]

    @property
    def current_decay(self) -> float:
        """The decay of the last update (0 before the second): with the warm-up, below `decay` in a short run
        (2,000 updates at 0.999 end at 0.9955), which a checkpoint records beside the nominal one."""
        return ema_decay_at(self.decay, self.num_updates - 1, self.warmup) if self.num_updates > 1 else 0.0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One update towards `model`'s current weights (same architecture as `module`)."""
        # the first update copies the weights; update n > 1 decays by ema_decay_at(n - 1)
        d = ema_decay_at(self.decay, self.num_updates, self.warmup) if self.num_updates > 0 else 0.0
        self.num_updates += 1
        ema_float, model_float, ema_other, model_other = self._pairs(model)
        if ema_float:
            torch._foreach_lerp_(ema_float, model_float, 1.0 - d)
        for e, s in zip(ema_other, model_other):
            e.copy_(s)
