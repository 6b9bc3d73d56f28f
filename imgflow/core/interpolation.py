"""Interpolation between two noise draws that stays on the shell a Gaussian lives on."""

from __future__ import annotations

import torch
from torch import Tensor


def slerp(a: Tensor, b: Tensor, weights: Tensor) -> Tensor:
    """Spherical interpolation: (n, *a.shape) points sin((1-w) W) / sin W * a + sin(w W) / sin W * b, W = angle(a, b).

    Two standard normals in D dimensions have norms near sqrt(D); a straight line between them dips to about
    sqrt(D / 2) in the middle, where a generator has seen no noise. Falls back to the straight line when the
    angle is tiny. weights: (n,) in [0, 1].
    """
    a64, b64 = a.double().flatten(), b.double().flatten()
    cos = torch.dot(a64, b64) / (a64.norm() * b64.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    w = weights.double().reshape(-1, *([1] * a.dim()))
    if float(omega) < 1e-6:
        out = (1 - w) * a.double() + w * b.double()
    else:
        out = (torch.sin((1 - w) * omega) * a.double() + torch.sin(w * omega) * b.double()) / torch.sin(omega)
    return out.to(a.dtype)
