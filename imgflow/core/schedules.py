"""Noise schedules alpha_t, beta_t of a Gaussian (or interpolant) probability path.

Convention: x_t = alpha_t * data + beta_t * noise (noise from the source), alpha_0 = 0,
alpha_1 = 1, beta_0 = 1, beta_1 = 0. Each schedule gives the values and their time
derivatives d_alpha = d alpha_t / dt, d_beta = d beta_t / dt, elementwise on any tensor t.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.core.registry import Registry


class Schedule:
    """Base class: alpha(t), beta(t) and their derivatives, elementwise on tensors."""

    #: times in [0, 1] where a derivative is infinite (a solver must not evaluate there)
    singular_times: tuple[float, ...] = ()

    def alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def beta(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_alpha(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def d_beta(self, t: Tensor) -> Tensor:
        raise NotImplementedError

    def wronskian(self, t: Tensor) -> Tensor:
        """W_t = d_alpha beta - alpha d_beta (> 0 on [0, 1] for every shipped schedule).

        It is the determinant that turns (velocity, x) into (data, noise) predictions.
        """
        return self.d_alpha(t) * self.beta(t) - self.alpha(t) * self.d_beta(t)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class LinearSchedule(Schedule):
    """alpha_t = t, beta_t = 1 - t (rectified flow / linear interpolant)."""

    def alpha(self, t: Tensor) -> Tensor:
        return t

    def beta(self, t: Tensor) -> Tensor:
        return 1.0 - t

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def d_beta(self, t: Tensor) -> Tensor:
        return -torch.ones_like(t)


class SqrtSchedule(Schedule):
    """alpha_t = t, beta_t = sqrt(1 - t); d_beta = -1 / (2 sqrt(1 - t)) is infinite at t = 1."""

    singular_times = (1.0,)

    def alpha(self, t: Tensor) -> Tensor:
        return t

    def beta(self, t: Tensor) -> Tensor:
        return torch.sqrt(1.0 - t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return torch.ones_like(t)

    def d_beta(self, t: Tensor) -> Tensor:
        return -0.5 / torch.sqrt(1.0 - t)


class CosineSchedule(Schedule):
    """alpha_t = sin(pi t / 2), beta_t = cos(pi t / 2) (variance preserving)."""

    def alpha(self, t: Tensor) -> Tensor:
        return torch.sin(0.5 * math.pi * t)

    def beta(self, t: Tensor) -> Tensor:
        return torch.cos(0.5 * math.pi * t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * t)

    def d_beta(self, t: Tensor) -> Tensor:
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * t)


class CallableSchedule(Schedule):
    """A schedule from two differentiable callables; derivatives come from autograd.

    alpha_fn and beta_fn map a tensor t elementwise to a tensor of the same shape.
    """

    def __init__(
        self,
        alpha_fn: Callable[[Tensor], Tensor],
        beta_fn: Callable[[Tensor], Tensor],
        singular_times: tuple[float, ...] = (),
    ) -> None:
        self.alpha_fn = alpha_fn
        self.beta_fn = beta_fn
        self.singular_times = singular_times

    def alpha(self, t: Tensor) -> Tensor:
        return self.alpha_fn(t)

    def beta(self, t: Tensor) -> Tensor:
        return self.beta_fn(t)

    def d_alpha(self, t: Tensor) -> Tensor:
        return _elementwise_derivative(self.alpha_fn, t)

    def d_beta(self, t: Tensor) -> Tensor:
        return _elementwise_derivative(self.beta_fn, t)


def _elementwise_derivative(fn: Callable[[Tensor], Tensor], t: Tensor) -> Tensor:
    """d fn(t) / dt for an elementwise fn, by one backward pass of sum(fn(t))."""
    with torch.enable_grad():
        t_req = t.detach().clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(fn(t_req).sum(), t_req)
    return grad.detach()


#: the schedules by the name configs use (flow.schedule)
SCHEDULES: Registry[type[Schedule]] = Registry("schedule", "flow.schedule", [
    ("linear", LinearSchedule),
    ("sqrt", SqrtSchedule),
    ("cosine", CosineSchedule),
])


def schedule_from_name(name: str) -> Schedule:
    """Build a named schedule ('linear', 'sqrt', 'cosine')."""
    return SCHEDULES[name]()
