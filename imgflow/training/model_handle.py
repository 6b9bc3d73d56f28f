"""The network as an objective sees it during training: one object for the forward pass and for a JVP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from imgflow.core.mean_flow import average_velocity_and_derivative, flow_map_outputs, rows


class TrainingModel:
    """Called like the network, it runs the forward pass the gradient must flow through: the
    DistributedDataParallel wrapper (whose hooks average gradients across processes) and/or the
    torch.compile'd module. `module` is the bare network.

    `flow_map_outputs` is what imgflow.core.mean_flow asks a model object for: the flow-map prediction
    u(x, t, r) with gradient for every row and du/dt along (velocity, 1, 0) for the rows with r != t.
    When the forward pass is the bare module, the core's own split does it (a forward pass for the
    r = t rows, a forward-mode pass for the rest); otherwise du/dt comes from a JVP of the bare module
    without gradient and the prediction from one ordinary pass through the wrapper (a JVP through the
    wrapper's inner module would skip its gradient hooks); both draw the same dropout masks.
    """

    def __init__(self, forward: Callable[..., Tensor], module: nn.Module) -> None:
        self.forward = forward
        self.module = module

    def __call__(self, *args: Any, **kwargs: Any) -> Tensor:
        return self.forward(*args, **kwargs)

    def flow_map_outputs(self, x: Tensor, t: Tensor, r: Tensor, velocity: Tensor, num_equal: int = 0,
                         **kwargs: Any) -> tuple[Tensor, Tensor]:
        """(u(x, t, r) for all rows with gradient, du/dt for rows [num_equal:]): see imgflow.core.mean_flow.flow_map_outputs."""
        if self.forward is self.module:
            return flow_map_outputs(self.module, x, t, r, velocity, num_equal, **kwargs)
        tail = slice(num_equal, None)
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():  # the prediction below draws the same dropout masks
            _, du_dt = average_velocity_and_derivative(self.module, x[tail], t[tail], r[tail], velocity[tail], **rows(kwargs, tail))
        return self.forward(x, t, r=torch.cat([t[:num_equal], r[tail]]), **kwargs), du_dt.detach()
