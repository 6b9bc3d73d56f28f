"""Forward-mode derivatives of a network: the one JVP helper (MeanFlow's du/dt, tests of the toy's flow maps)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from contextlib import nullcontext

from torch import Tensor
from torch.func import jvp as _func_jvp


def math_attention():
    """Forward-mode AD has no rule for the fused attention kernels (CPU flash, CUDA flash/efficient): use the math one."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - torch < 2.3
        return nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def jvp(fn: Callable[..., Tensor], primals: Sequence[Tensor], tangents: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """(fn(*primals), d/de fn(primals + e tangents) at e = 0) in one forward-mode pass.

    The primal output carries the gradient to fn's parameters when grad mode is on; attention runs on
    the math kernel, which has forward-mode rules.
    """
    with math_attention(), warnings.catch_warnings():
        # torch's first forward-AD call registers its decompositions with torch.jit.script, which warns (torch 2.14)
        warnings.filterwarnings("ignore", message=".*torch.jit.script.* is deprecated", category=FutureWarning)
        return _func_jvp(fn, tuple(primals), tuple(tangents))
