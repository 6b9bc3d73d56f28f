"""Conditional probability paths p_t(x | data) between a noise source (t = 0) and data (t = 1).

Every path here is an interpolant x_t = alpha_t * data + beta_t * noise with data ~ p_data
and noise ~ p_simple. With a standard-normal source it is a Gaussian path,
p_t(x | data) = N(alpha_t data, beta_t^2 I), which also has a conditional score. With the
linear schedule and any source it is the linear path x_t = (1 - t) noise + t data.
"""

from __future__ import annotations

import torch
from torch import Tensor

from imgflow.core.broadcast import expand_like
from imgflow.core.distributions import Sampleable
from imgflow.core.schedules import LinearSchedule, Schedule


class InterpolantPath:
    """x_t = alpha_t data + beta_t noise with noise ~ p_simple; shape-agnostic in x.

    Args:
        schedule: alpha_t, beta_t and their derivatives.
        p_simple: the noise source; None means N(0, I) in the shape of the data.
        p_data: optional data sampler, needed only by `sample_conditioning_variable`
            and `sample_marginal_path`.
    """

    def __init__(
        self,
        schedule: Schedule,
        p_simple: Sampleable | None = None,
        p_data: Sampleable | None = None,
    ) -> None:
        self.schedule = schedule
        self.p_simple = p_simple
        self.p_data = p_data

    @property
    def singular_times(self) -> tuple[float, ...]:
        """Times where the conditional vector field (and score) are infinite: beta_t = 0 at t = 1."""
        return tuple(sorted({1.0, *self.schedule.singular_times}))

    def coefficients(self, t: Tensor | float, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(alpha, beta, d_alpha, d_beta) at t, broadcast against x (shape (B, 1, ..., 1))."""
        t = expand_like(t, x)
        s = self.schedule
        return s.alpha(t), s.beta(t), s.d_alpha(t), s.d_beta(t)

    # --- sampling -------------------------------------------------------------------------
    def sample_source(self, like: Tensor) -> Tensor:
        """Draw noise ~ p_simple, one per sample of `like` (B, ...), in its shape."""
        if self.p_simple is None:
            return torch.randn_like(like)
        return self.p_simple.sample(like.shape[0]).to(device=like.device, dtype=like.dtype).reshape(like.shape)

    def sample_conditioning_variable(self, num_samples: int) -> Tensor:
        """Draw data ~ p_data, shape (num_samples, ...)."""
        if self.p_data is None:
            raise ValueError("this path has no p_data; pass p_data=... to sample data from it")
        return self.p_data.sample(num_samples)

    def interpolate(self, data: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
        """x_t = alpha_t data + beta_t noise."""
        alpha, beta, _, _ = self.coefficients(t, data)
        return alpha * data + beta * noise

    def interpolant_velocity(self, data: Tensor, noise: Tensor, t: Tensor | float) -> Tensor:
        """dx_t/dt = d_alpha data + d_beta noise: the conditional velocity at x_t, finite for all t."""
        _, _, d_alpha, d_beta = self.coefficients(t, data)
        return d_alpha * data + d_beta * noise

    def sample_conditional_path(self, data: Tensor, t: Tensor | float) -> Tensor:
        """x ~ p_t(. | data): shape of data."""
        return self.interpolate(data, self.sample_source(data), t)

    def sample_marginal_path(self, t: Tensor) -> Tensor:
        """x ~ p_t = E_data p_t(. | data): t is (B,), data drawn from p_data."""
        data = self.sample_conditioning_variable(t.shape[0])
        return self.sample_conditional_path(data, t)

    # --- conditional fields ---------------------------------------------------------------
    def conditional_vector_field(self, x: Tensor, data: Tensor, t: Tensor | float) -> Tensor:
        """u_t(x | data) = d_alpha data + (d_beta / beta)(x - alpha data); infinite at t = 1 (beta = 0)."""
        alpha, beta, d_alpha, d_beta = self.coefficients(t, x)
        return d_alpha * data + (d_beta / beta) * (x - alpha * data)


class GaussianPath(InterpolantPath):
    """p_t(x | data) = N(alpha_t data, beta_t^2 I): the interpolant with a standard-normal source."""

    def __init__(self, schedule: Schedule, p_data: Sampleable | None = None) -> None:
        super().__init__(schedule, p_simple=None, p_data=p_data)

    def conditional_score(self, x: Tensor, data: Tensor, t: Tensor | float) -> Tensor:
        """grad_x log p_t(x | data) = (alpha data - x) / beta^2; infinite at t = 1."""
        alpha, beta, _, _ = self.coefficients(t, x)
        return (alpha * data - x) / beta**2


class LinearPath(InterpolantPath):
    """x_t = (1 - t) noise + t data with noise from any source p_simple (None means N(0, I))."""

    def __init__(self, p_simple: Sampleable | None = None, p_data: Sampleable | None = None) -> None:
        super().__init__(LinearSchedule(), p_simple=p_simple, p_data=p_data)
