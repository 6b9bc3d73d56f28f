"""ODEs and SDEs: the objects the solvers integrate.

An ODE has a drift_coefficient f(x, t); an SDE adds a deterministic diffusion_coefficient
g(x, t), and a solver integrates dX = f dt + g dW. Only solvers draw noise: g is never random.
x is (B, ...) and t is (B,). `singular_times` lists the times in [0, 1] where the drift or
diffusion is infinite; solvers refuse a time grid that would evaluate there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from imgflow.core.broadcast import batch_times, expand_like
from imgflow.core.conversions import SINGULAR_AT, convert
from imgflow.core.paths import GaussianPath, InterpolantPath
from imgflow.core.schedules import Schedule

#: a vector field: (x (B, ...), t (B,)) -> (B, ...)
Field = Callable[[Tensor, Tensor], Tensor]
#: an average velocity (flow map): (x (B, ...), t (B,), r (B,)) -> (B, ...), u = (x_r - x_t) / (r - t)
AverageVelocity = Callable[[Tensor, Tensor, Tensor], Tensor]


class ODE(ABC):
    """dX_t = u_t(X_t) dt."""

    singular_times: tuple[float, ...] = ()

    @abstractmethod
    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        """u_t(x): (B, ...) for x (B, ...) and t (B,)."""


class SDE(ABC):
    """dX_t = f_t(X_t) dt + g_t(X_t) dW_t with deterministic f and g."""

    singular_times: tuple[float, ...] = ()

    @abstractmethod
    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        """f_t(x): (B, ...)."""

    @abstractmethod
    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        """g_t(x): a deterministic tensor broadcastable to x (a scalar sigma gives (B, 1, ...))."""


# --- fields from models ---------------------------------------------------------------------


class FlowMap(ODE):
    """A learned flow map, given by its average velocity u(x, t, r) = (1 / (r - t)) int_t^r v(x_s, s) ds.

    x_s is the ODE trajectory through x at time t, so x_r = x + (r - t) u(x, t, r) for any r:
    a flow-map solver jumps with it. At r = t the average is the instantaneous velocity, which
    makes a FlowMap an ordinary ODE for every other solver.
    """

    def __init__(self, average_velocity: AverageVelocity, schedule: Schedule | None = None) -> None:
        self.field = average_velocity
        self.schedule = schedule  # the path x_t = alpha_t data + beta_t noise it was trained on (re-noising samplers need it)
        self.singular_times = tuple(getattr(average_velocity, "singular_times", ()))

    def average_velocity(self, x: Tensor, t: Tensor, r: Tensor) -> Tensor:
        """u(x, t, r): (B, ...) for x (B, ...), t and r (B,)."""
        return self.field(x, t, r)

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field(x, t, t)


class ModelField:
    """A network's output as a velocity field u(x, t).

    Args:
        model: called as model(x, t, **model_kwargs) -> (B, ...).
        prediction: what the model predicts ("velocity", "noise", "data" or "score"); a
            non-velocity prediction is converted with the Gaussian path's `schedule`.
        schedule: required for non-velocity predictions.
        model_kwargs: extra inputs, e.g. {"y": labels}.
    """

    def __init__(
        self,
        model: Callable[..., Tensor],
        prediction: str = "velocity",
        schedule: Schedule | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if prediction != "velocity" and schedule is None:
            raise ValueError(f"a {prediction!r}-prediction model needs the path's schedule to give a velocity")
        self.model = model
        self.prediction = prediction
        self.schedule = schedule
        self.model_kwargs = model_kwargs or {}
        self.singular_times = SINGULAR_AT[(prediction, "velocity")] if prediction != "velocity" else ()

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        out = self.model(x, t, **self.model_kwargs)
        if self.prediction == "velocity":
            return out
        return convert(out, self.prediction, "velocity", self.schedule, x, t)


class ClassifierFreeGuidance:
    """Guided prediction (1 - w) f(x, t, null) + w f(x, t, y) in one batched call of 2B.

    w = 1 is the plain conditional model, w = 0 the unconditional one. Because every
    conversion between parameterisations is affine with weights summing to one, guiding the
    raw prediction equals guiding the velocity. One call counts as one function evaluation.
    Extra tensor inputs (e.g. the second time r of a flow-map model) are passed through.
    """

    def __init__(self, model: Callable[..., Tensor], y: Tensor, guidance_scale: float, null_label: int) -> None:
        self.model = model
        self.y = y
        self.w = float(guidance_scale)
        self.null_label = null_label

    def __call__(self, x: Tensor, t: Tensor, **extra: Tensor) -> Tensor:
        t = batch_times(t, x)
        if self.w == 1.0:
            return self.model(x, t, y=self.y, **extra)
        null = torch.full_like(self.y, self.null_label)
        if self.w == 0.0:
            return self.model(x, t, y=null, **extra)
        doubled = {k: torch.cat([v, v]) for k, v in extra.items()}
        out = self.model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([null, self.y]), **doubled)
        uncond, cond = out.chunk(2)
        return uncond + self.w * (cond - uncond)


# --- ODEs -----------------------------------------------------------------------------------


class ConditionalVectorFieldODE(ODE):
    """dX = u_t(X | data) dt: started from p_simple, X_t ~ p_t(. | data). Infinite at t = 1."""

    def __init__(self, path: InterpolantPath, data: Tensor) -> None:
        self.path = path
        self.data = data
        self.singular_times = path.singular_times

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return self.path.conditional_vector_field(x, self.data, t)


class LearnedVectorFieldODE(ODE):
    """dX = u_theta(X, t) dt for a learned velocity field (e.g. a `ModelField`)."""

    def __init__(self, field: Field) -> None:
        self.field = field
        self.singular_times = tuple(getattr(field, "singular_times", ()))

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return self.field(x, t)


# --- SDEs -----------------------------------------------------------------------------------


class ConditionalVectorFieldSDE(SDE):
    """dX = [u_t(X | data) + sigma^2/2 s_t(X | data)] dt + sigma dW: marginals stay p_t(. | data)."""

    def __init__(self, path: GaussianPath, data: Tensor, sigma: float) -> None:
        self.path = path
        self.data = data
        self.sigma = float(sigma)
        self.singular_times = path.singular_times

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        u = self.path.conditional_vector_field(x, self.data, t)
        s = self.path.conditional_score(x, self.data, t)
        return u + 0.5 * self.sigma**2 * s

    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.full_like(expand_like(t, x), self.sigma)


class LangevinFlowSDE(SDE):
    """dX = [u_theta + sigma^2/2 s_theta] dt + sigma dW from a flow model and a score model."""

    def __init__(self, flow: Field, score: Field, sigma: float) -> None:
        self.flow = flow
        self.score = score
        self.sigma = float(sigma)

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return self.flow(x, t) + 0.5 * self.sigma**2 * self.score(x, t)

    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return torch.full_like(expand_like(t, x), self.sigma)


class InterpolantSDE(SDE):
    """dX = [u + eps_t s] dt + sqrt(2 eps_t) dW with eps_t = epsilon * beta_t, s from u.

    The score derived from the velocity, s = -noise_hat / beta_t, is infinite at t = 1, but
    eps_t s = -epsilon noise_hat with noise_hat = (d_alpha x - alpha u) / W finite for all t:
    the noise level vanishes exactly where the score blows up. (beta_t is the coefficient of
    the noise; the interpolant tutorial, whose time runs the other way, calls it alpha_t.)
    """

    def __init__(self, velocity: Field, schedule: Schedule, epsilon: float) -> None:
        self.velocity = velocity
        self.schedule = schedule
        self.epsilon = float(epsilon)
        self.singular_times = tuple(getattr(velocity, "singular_times", ())) + tuple(schedule.singular_times)

    def drift_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        u = self.velocity(x, t)
        if self.epsilon == 0.0:
            return u
        noise = convert(u, "velocity", "noise", self.schedule, x, t)
        return u - self.epsilon * noise

    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        beta = self.schedule.beta(expand_like(t, x))
        return torch.sqrt(2.0 * self.epsilon * beta.clamp_min(0.0))

