"""The network as an objective sees it during training: one object for the forward pass and for a JVP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from imgflow.core.mean_flow import average_velocity_and_derivative


class TrainingModel:
    """Called like the network, it runs the forward pass the gradient must flow through: the
    DistributedDataParallel wrapper (whose hooks average gradients across processes) and/or the
    torch.compile'd module. `module` is the bare network.

    `average_velocity_and_derivative` is what imgflow.core.mean_flow asks a model object for: the
    flow-map prediction u(x, t, r) with gradient and du/dt along (velocity, 1, 0). When the forward
    pass is the bare module, one forward-mode pass gives both; otherwise du/dt comes from a JVP of
    the bare module without gradient and the prediction from an ordinary pass through the wrapper
    (a JVP through the wrapper's inner module would skip its gradient hooks); both draw the same
    dropout masks.
    """

    def __init__(self, forward: Callable[..., Tensor], module: nn.Module) -> None:
        self.forward = forward
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.forward(*args, **kwargs)

    def average_velocity_and_derivative(self, x: Tensor, t: Tensor, r: Tensor, velocity: Tensor, **kwargs: Any) -> tuple[Tensor, Tensor]:
        if self.forward is self.module:
            return average_velocity_and_derivative(self.module, x, t, r, velocity, **kwargs)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():  # the prediction below draws the same dropout masks
            _, du_dt = average_velocity_and_derivative(self.module, x, t, r, velocity, **kwargs)
        return self.forward(x, t, r=r, **kwargs), du_dt.detach()
