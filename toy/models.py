"""MLPs on (x, t): a velocity field u_theta(x, t) and a score s_theta(x, t) for 2-D data.

Both take x (B, D) and t (B,) (or (B, 1)), concatenate them into (B, D + 1) and return
(B, D). They are plain batched modules: the core losses and solvers call them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from imgflow.core import batch_times
from imgflow.core.jvp import jvp
from imgflow.core.registry import Registry

__all__ = ["ACTIVATIONS", "ACTIVATION_TANGENTS", "MLPFlowMap", "MLPScore", "MLPVectorField", "build_mlp"]

#: the activations an MLP takes by name
ACTIVATIONS: Registry[type[nn.Module]] = Registry("activation", "activation", [
    ("silu", nn.SiLU), ("relu", nn.ReLU), ("gelu", nn.GELU), ("tanh", nn.Tanh), ("elu", nn.ELU),
])


def build_mlp(dims: Sequence[int], activation: str = "silu") -> nn.Sequential:
    """Linear layers dims[0] -> ... -> dims[-1] with `activation` between them (none after the last)."""
    act = ACTIVATIONS[activation]
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


class MLPConditionalField(nn.Module):
    """u_theta(x, t, y) = MLP([x, t, e_y]): (B, D), (B,), labels (B,) in 0..K -> (B, D).

    Label K is "no class" (classifier-free guidance's null label, `null_label`); e_y is a learned embedding of
    dimension `label_dim`. Called as model(x, t, y=labels), the convention of the image networks, so the core's
    ClassifierFreeGuidance and losses (model_kwargs={"y": labels}) take it as they take a U-Net.
    """

    def __init__(self, dim: int = 2, num_classes: int = 3, hiddens: Sequence[int] = (64, 64, 64, 64), label_dim: int = 8,
                 activation: str = "silu") -> None:
        super().__init__()
        self.dim, self.num_classes = dim, num_classes
        self.embedding = nn.Embedding(num_classes + 1, label_dim)
        self.net = build_mlp([dim + 1 + label_dim, *hiddens, dim], activation)

    @property
    def null_label(self) -> int:
        return self.num_classes

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        if y is None:
            y = torch.full((x.shape[0],), self.null_label, dtype=torch.long, device=x.device)
        return self.net(torch.cat([x, batch_times(t, x)[:, None], self.embedding(y)], dim=-1))


class MLPScore(MLPVectorField):
    """s_theta(x, t) = MLP([x, t]) approximating grad log p_t(x): same architecture, a score's name."""


#: forward-mode rules of the activations: (z, dz) -> act'(z) dz, for MLPFlowMap's analytic JVP
#: (silu: aten's fused backward kernel, the same product in one pass)
ACTIVATION_TANGENTS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "silu": lambda z, dz: torch.ops.aten.silu_backward(dz, z),
    "relu": lambda z, dz: dz * (z > 0).to(dz.dtype),
    "tanh": lambda z, dz: dz * (1 - torch.tanh(z) ** 2),
}


class MLPFlowMap(nn.Module):
    """u_theta(x, t, r) = MLP([x, t, r - t]): the average velocity over [t, r] (a MeanFlow flow map).

    (B, D), (B,), (B,) -> (B, D); r = None means r = t, where the model is a velocity field, so
    every ODE solver can use it as well as the flow-map solver (x_r = x_t + (r - t) u).

    analytic_jvp: how `average_velocity_and_derivative` (the hook the core's `mean_flow_loss` asks a
    model for) computes du/dt. False (default): the core's forward-mode JVP (`imgflow.core.jvp`,
    torch.func), exactly what the loss does for any model. True: the tangent is pushed through the
    layers by hand (W dz for a linear layer, act'(z) dz for an activation), without gradient, since the
    loss uses du/dt only inside its stop-gradient target. Same numbers to rounding (a test compares
    the two); ~4x cheaper for this MLP on a CPU, where torch.func's per-call overhead (~2.5 ms) dominates.
    """

    def __init__(self, dim: int = 2, hiddens: Sequence[int] = (64, 64, 64, 64), activation: str = "silu",
                 analytic_jvp: bool = False) -> None:
        super().__init__()
        if analytic_jvp and activation not in ACTIVATION_TANGENTS:
            raise ValueError(f"analytic_jvp supports the activations {', '.join(ACTIVATION_TANGENTS)}, not {activation!r}")
        self.dim = dim
        self.hiddens = tuple(hiddens)
        self.activation = activation
        self.analytic_jvp = analytic_jvp
        self.net = build_mlp([dim + 2, *hiddens, dim], activation)

    def _inputs(self, x: Tensor, t: Tensor, r: Tensor | None) -> Tensor:
        t = batch_times(t, x)
        r = t if r is None else batch_times(r, x)
        return torch.cat([x, t[:, None], (r - t)[:, None]], dim=-1)

    def forward(self, x: Tensor, t: Tensor, r: Tensor | None = None) -> Tensor:
        return self.net(self._inputs(x, t, r))

    def average_velocity_and_derivative(self, x: Tensor, t: Tensor, r: Tensor, velocity: Tensor) -> tuple[Tensor, Tensor]:
        """(u(x, t, r), du/dt along (velocity, 1, 0)): the primal carries the gradient, du/dt does not (analytic_jvp)."""
        if not self.analytic_jvp:
            return jvp(lambda xx, tt, rr: self(xx, tt, r=rr), (x, t, r), (velocity, torch.ones_like(t), torch.zeros_like(r)))
        a = self._inputs(x, t, r)
        ones = torch.ones(x.shape[0], 1, dtype=x.dtype, device=x.device)
        da = torch.cat([velocity.detach(), ones, -ones], dim=-1)  # d/dt of [x, t, r - t] with dx/dt = velocity, r fixed
        tangent = ACTIVATION_TANGENTS[self.activation]
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                a = layer(a)
                with torch.no_grad():
                    da = da @ layer.weight.T
            else:
                with torch.no_grad():
                    da = tangent(a, da)
                a = layer(a)
        return a, da
