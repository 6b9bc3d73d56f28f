"""Broadcasting times from (B,) to (B, C, H, W): one rule for 2-D points and images.

A batch carries one time per sample, t of shape (B,). The path's coefficients alpha_t, beta_t are then (B,)
too, and `alpha * data` goes wrong: PyTorch aligns (B,) with the *last* axis, so for images (B, C, H, W) it fails unless W = B, and for
points (B, 2) unless B is 1 or 2; in those cases it silently scales columns or coordinates instead of samples. The fix is
to give t trailing axes of size 1, t[:, None, None, None] for images and t[:, None] for points:
`expand_like(t, x)` does exactly that for any x, so every formula of the core is written once,
`alpha(expand_like(t, x)) * data`, and runs on (B, 2) and (B, C, H, W) alike. A scalar t (a python float or
a 0-d tensor) becomes (1, ..., 1) and applies to every sample; a t whose length is not B is an error that
names both shapes. Networks take t as (B,) (`batch_times` repeats a scalar).
"""

from __future__ import annotations

import torch
from torch import Tensor


def expand_like(t: Tensor | float, x: Tensor) -> Tensor:
    """Reshape a time t of shape (), (B,) or (B, 1, ...) to (B, 1, ..., 1) matching x.

    A python float or 0-d tensor broadcasts to every sample. The result has x's dtype
    and device, so `alpha(expand_like(t, x)) * x` works for (B, 2) and (B, C, H, W) alike.
    """
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    if t.dim() == 0:
        return t.reshape([1] * x.dim())
    if t.shape[0] not in (1, x.shape[0]) or t.numel() != t.shape[0]:
        raise ValueError(
            f"time of shape {tuple(t.shape)} does not match a batch of shape {tuple(x.shape)}; "
            "pass t as (B,), (B, 1) or a scalar"
        )
    return t.reshape([t.shape[0]] + [1] * (x.dim() - 1))


def batch_times(t: Tensor | float, x: Tensor) -> Tensor:
    """Return t as a (B,) tensor for a batch x (scalars are repeated), in x's dtype/device."""
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return t.reshape(-1).expand(x.shape[0]) if t.numel() == 1 else t.reshape(x.shape[0])
