"""Digests that identify weights: equal exactly when the tensors are."""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


def weights_digest(weights: dict[str, Tensor]) -> str:
    """A digest of a state dict's names, shapes, dtypes and bytes: equal exactly when the weights are."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(weights):
        t = weights[name].detach().cpu().contiguous()
        h.update(f"{name}\0{tuple(t.shape)}\0{t.dtype}\n".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


__all__ = ["weights_digest"]
