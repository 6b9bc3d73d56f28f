"""Conditional probability paths p_t(x | z) between a source p_simple (t = 0) and data (t = 1).

Every path here is an interpolant x_t = alpha_t z + beta_t x0 with z ~ p_data and
x0 ~ p_simple. With a standard-normal source it is a Gaussian path,
p_t(x | z) = N(alpha_t z, beta_t^2 I), which also has a conditional score. With the
linear schedule and any source it is the linear path x_t = (1 - t) x0 + t z.
"""

from __future__ import annotations

from torch import Tensor
import torch

from imgflow.core.broadcast import expand_like
from imgflow.core.distributions import Sampleable
from imgflow.core.schedules import LinearSchedule, Schedule


class InterpolantPath:
    """x_t = alpha_t z + beta_t x0 with x0 ~ p_simple; shape-agnostic in x.

    Args:
        schedule: alpha_t, beta_t and their derivatives.
        p_simple: source sampler; None means N(0, I) in the shape of the data.
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
    def sample_source(self, z: Tensor) -> Tensor:
        """Draw x0 ~ p_simple, one per sample of z, in z's shape."""
        if self.p_simple is None:
            return torch.randn_like(z)
        return self.p_simple.sample(z.shape[0]).to(device=z.device, dtype=z.dtype).reshape(z.shape)

    def sample_conditioning_variable(self, num_samples: int) -> Tensor:
        """Draw z ~ p_data, shape (num_samples, ...)."""
        if self.p_data is None:
            raise ValueError("this path has no p_data; pass p_data=... to sample z from it")
        return self.p_data.sample(num_samples)

    def interpolate(self, z: Tensor, x0: Tensor, t: Tensor | float) -> Tensor:
        """x_t = alpha_t z + beta_t x0."""
        alpha, beta, _, _ = self.coefficients(t, z)
        return alpha * z + beta * x0

    def interpolant_velocity(self, z: Tensor, x0: Tensor, t: Tensor | float) -> Tensor:
        """dI/dt = d_alpha z + d_beta x0: the conditional velocity at x_t, finite for all t."""
        _, _, d_alpha, d_beta = self.coefficients(t, z)
        return d_alpha * z + d_beta * x0

    def sample_conditional_path(self, z: Tensor, t: Tensor | float) -> Tensor:
        """x ~ p_t(. | z): shape of z."""
        return self.interpolate(z, self.sample_source(z), t)

    def sample_marginal_path(self, t: Tensor) -> Tensor:
        """x ~ p_t = E_z p_t(. | z): t is (B,), z drawn from p_data."""
        z = self.sample_conditioning_variable(t.shape[0])
        return self.sample_conditional_path(z, t)

    # --- conditional fields ---------------------------------------------------------------
    def conditional_vector_field(self, x: Tensor, z: Tensor, t: Tensor | float) -> Tensor:
        """u_t(x | z) = d_alpha z + (d_beta / beta)(x - alpha z); infinite at t = 1 (beta = 0)."""
        alpha, beta, d_alpha, d_beta = self.coefficients(t, x)
        return d_alpha * z + (d_beta / beta) * (x - alpha * z)


class GaussianPath(InterpolantPath):
    """p_t(x | z) = N(alpha_t z, beta_t^2 I): the interpolant with a standard-normal source."""

    def __init__(self, schedule: Schedule, p_data: Sampleable | None = None) -> None:
        super().__init__(schedule, p_simple=None, p_data=p_data)

    def conditional_score(self, x: Tensor, z: Tensor, t: Tensor | float) -> Tensor:
        """grad_x log p_t(x | z) = (alpha z - x) / beta^2; infinite at t = 1."""
        alpha, beta, _, _ = self.coefficients(t, x)
        return (alpha * z - x) / beta**2


class LinearPath(InterpolantPath):
    """x_t = (1 - t) x0 + t z with x0 from any source p_simple (None means N(0, I))."""

    def __init__(self, p_simple: Sampleable | None = None, p_data: Sampleable | None = None) -> None:
        super().__init__(LinearSchedule(), p_simple=p_simple, p_data=p_data)
