"""MLPs on (x, t): a velocity field u_theta(x, t) and a score s_theta(x, t) for 2-D data.

Both take x (B, D) and t (B,) (or (B, 1)), concatenate them into (B, D + 1) and return
(B, D). They are plain batched modules: the core losses and solvers call them directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from imgflow.core import batch_times

__all__ = ["ACTIVATIONS", "MLPScore", "MLPVectorField", "build_mlp"]

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
}


def build_mlp(dims: Sequence[int], activation: str = "silu") -> nn.Sequential:
    """Linear layers dims[0] -> ... -> dims[-1] with `activation` between them (none after the last)."""
    try:
        act = ACTIVATIONS[activation]
    except KeyError:
        raise ValueError(f"unknown activation {activation!r}; choose one of {', '.join(ACTIVATIONS)}") from None
    layers: list[nn.Module] = []
    for i in range(len(dims) - 1):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(dims) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


class MLPVectorField(nn.Module):
    """u_theta(x, t) = MLP([x, t]): (B, D), (B,) -> (B, D).

    Args:
        dim: data dimension D.
        hiddens: hidden layer widths, e.g. (64, 64, 64, 64).
        activation: one of ACTIVATIONS.
    """

    def __init__(self, dim: int = 2, hiddens: Sequence[int] = (64, 64, 64, 64), activation: str = "silu") -> None:
        super().__init__()
        self.dim = dim
        self.hiddens = tuple(hiddens)
        self.activation = activation
        self.net = build_mlp([dim + 1, *hiddens, dim], activation)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([x, batch_times(t, x)[:, None]], dim=-1))


class MLPScore(MLPVectorField):
    """s_theta(x, t) = MLP([x, t]) approximating grad log p_t(x): same architecture, a score's name."""


class MLPFlowMap(nn.Module):
    """u_theta(x, t, r) = MLP([x, t, r - t]): the average velocity over [t, r] (a MeanFlow flow map).

    (B, D), (B,), (B,) -> (B, D); r = None means r = t, where the model is a velocity field, so
    every ODE solver can use it as well as the flow-map solver (x_r = x_t + (r - t) u).
    """

    def __init__(self, dim: int = 2, hiddens: Sequence[int] = (64, 64, 64, 64), activation: str = "silu") -> None:
        super().__init__()
        self.dim = dim
        self.hiddens = tuple(hiddens)
        self.activation = activation
        self.net = build_mlp([dim + 2, *hiddens, dim], activation)

    def forward(self, x: Tensor, t: Tensor, r: Tensor | None = None) -> Tensor:
        t = batch_times(t, x)
        r = t if r is None else batch_times(r, x)
        return self.net(torch.cat([x, t[:, None], (r - t)[:, None]], dim=-1))
