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
    r = t rows, a forward-mode pass for the rest). Otherwise the JVP of the bare module gives du/dt without
    gradient (a JVP through the wrapper's inner module would skip its gradient hooks) and the prediction
    comes through the wrapper, in the same two parts and the same random order: the r = t rows first, then
    the jump rows with the random state the JVP started from, so each row draws exactly the dropout mask
    it draws in the bare module's split (one pass over all rows would draw masks for B rows where the JVP
    drew them for B - k, and no row's mask would match). Under torch.compile the compiled graph draws its
    own random numbers, so with dropout > 0 the masks cannot match: the config refuses that combination.
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
        head, tail = slice(0, num_equal), slice(num_equal, None)
        parts = [self.forward(x[head], t[head], r=t[head], **rows(kwargs, head))] if num_equal > 0 else []
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():  # the jump rows' prediction below draws the same masks
            _, du_dt = average_velocity_and_derivative(self.module, x[tail], t[tail], r[tail], velocity[tail], **rows(kwargs, tail))
        if x.shape[0] > num_equal:
            parts.append(self.forward(x[tail], t[tail], r=r[tail], **rows(kwargs, tail)))
        return torch.cat(parts), du_dt.detach()
