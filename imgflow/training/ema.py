"""Exponential moving average of the weights, on torch's AveragedModel."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel


def ema_decay_at(decay: float, num_updates: int, warmup: bool = True) -> float:
    """The decay used for update number n (1-based): min(decay, (1 + n) / (10 + n)) with warm-up.

    The warm-up keeps the average from being dominated by the random initialisation in
    short runs; long runs reach the configured decay after ~10 / (1 - decay) updates.
    """
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates)) if warmup else decay


def make_ema(model: nn.Module, decay: float, warmup: bool = True) -> AveragedModel:
    """An AveragedModel whose update is ema = d ema + (1 - d) param for floating tensors
    (parameters and buffers such as BatchNorm statistics) and a copy for integer buffers."""

    def update(ema_tensors: list[Tensor], model_tensors: list[Tensor], num_averaged: Tensor) -> None:
        d = ema_decay_at(decay, int(num_averaged.item()), warmup)
        if ema_tensors[0].is_floating_point():
            torch._foreach_lerp_(ema_tensors, model_tensors, 1.0 - d)
        else:
            torch._foreach_copy_(ema_tensors, model_tensors)

    ema = AveragedModel(model, multi_avg_fn=update, use_buffers=True)
    ema.requires_grad_(False)
    return ema
