"""What one training image costs a network: multiply-adds forward and the activations kept for backward.

Counted, not timed: the network is built on PyTorch's meta device (no memory, no arithmetic), run forward
on one input under `torch.utils.flop_counter.FlopCounterMode` (convolutions, matmuls and attention; 1 MAC
= 2 of its FLOPs) while `saved_tensors_hooks` add up the bytes autograd keeps for the backward pass. A
GPU plan follows from it: forward + backward is about 3x the forward MACs, and the memory per GPU is about
16 bytes per parameter (fp32 weights, gradients and both Adam moments) + 4 for the EMA + the batch times the
saved activations (fp32 here; bf16 autocast keeps most of them in half the bytes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Footprint:
    """Per image: `macs` forward multiply-adds, `saved_bytes` of fp32 activations kept for backward; `parameters`."""

    macs: int
    saved_bytes: int
    parameters: int

    def training_memory_bytes(self, batch_per_gpu: int, ema: bool = True) -> int:
        """Weights, gradients, Adam moments (and EMA) in fp32 plus the saved activations of a batch, fp32."""
        return self.parameters * (16 + (4 if ema else 0)) + batch_per_gpu * self.saved_bytes


def measure_footprint(build: Callable[[], nn.Module], forward: Callable[[nn.Module], object]) -> Footprint:
    """The footprint of `forward(model)` (one image's forward pass, inputs made with device='meta') for `build()`."""
    from torch.utils.flop_counter import FlopCounterMode

    saved = [0]

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved[0] += t.numel() * t.element_size()
        return t

    with torch.device("meta"):
        model = build()
        with FlopCounterMode(display=False) as counter, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            forward(model)
    return Footprint(counter.get_total_flops() // 2, saved[0], sum(p.numel() for p in model.parameters()))
