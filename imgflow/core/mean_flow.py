"""Average velocities (MeanFlow, Geng et al. 2025): flow maps that sample in one or two steps, trained without a teacher.

Convention (the project's): t = 0 is noise, t = 1 is data, and the flow x_s solves dx/ds = v(x, s)
with v the marginal velocity of the path. A flow-map model u(x, t, r) approximates the average
velocity over [t, r] along the trajectory through x at time t:

    u(x_t, t, r) = (1 / (r - t)) int_t^r v(x_s, s) ds,     so that     x_r = x_t + (r - t) u(x_t, t, r);

r = t gives back the instantaneous velocity, u(x, t, t) = v(x, t). Sampling jumps from t to r > t.

The MeanFlow identity, derived in this convention. Multiply the definition by (r - t) and take the
total derivative in t along the trajectory, with r held fixed. On the left, d/dt [(r - t) u] =
-u + (r - t) du/dt; on the right, d/dt int_t^r v ds = -v(x_t, t) (the lower limit moves). Hence

    u(x_t, t, r) = v(x_t, t) + (r - t) du/dt,     du/dt = (d_x u) v(x_t, t) + d_t u     (r fixed).

Every term keeps its sign under the paper's convention (t = 1 noise, sampling from t down to r < t,
u = v - (t - r) du/dt): there both the velocity and the average flip sign while the time difference
t - r = (1 - r_ours) - (1 - t_ours) = r_ours - t_ours is the same interval, so u = v + (r - t) du/dt
here is that identity, term for term.

Training replaces v by the conditional velocity v_c = d_alpha data + d_beta noise (whose conditional
mean given x_t is v: the target is linear in v, so the regression still has the right minimiser),
computes du/dt as one forward-mode JVP of the network at (x_t, t, r) in the direction (v_c, 1, 0),
and regresses u_theta(x_t, t, r) onto the fixed target u_tgt = v_c + (r - t) du/dt (stop-gradient).
At r = t the target is v_c and the loss is flow matching.

Classifier-free guidance folded into training (the paper's section 4.2 and appendix): for samples
that keep their label c, the velocity is the guided one,

    v_tilde = omega v_c + kappa u_theta(x_t, t, t | c) + (1 - omega - kappa) u_theta(x_t, t, t | null),

(network terms without gradient), used both as v and as the JVP direction; samples whose label was
dropped keep v_c. The model then draws, in one step and without guidance at sampling time, what a
velocity model guided with w = omega / (1 - kappa) would: `trained_guidance(omega, kappa)`.

The loss per sample is the squared error (reduced as the other losses), reweighted adaptively by
1 / (error + eps)^p with the weight held fixed (p = 0: plain squared error; p = 1 normalises every
sample's error; the paper's best, 1 on ImageNet and 0.75 on CIFAR-10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from imgflow.core.broadcast import expand_like
from imgflow.core.jvp import jvp
from imgflow.core.losses import Reduction, per_sample_reduce
from imgflow.core.paths import InterpolantPath

#: u(x (B, ...), t (B,), r (B,)) -> (B, ...): an average velocity with any extra inputs bound
AverageVelocity = Callable[[Tensor, Tensor, Tensor], Tensor]


def trained_guidance(omega: float, kappa: float = 0.0) -> float:
    """The guidance scale w a model trained with (omega, kappa) samples like: omega / (1 - kappa)."""
    return omega / (1.0 - kappa)


def sample_time_pairs(n: int, *, mean: float = 0.4, std: float = 1.0, equal_fraction: float = 0.75,
                      generator: torch.Generator | None = None, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """(t, r), each (n,), with 0 <= t <= r <= 1: two logit-normal draws sorted, and r = t for a fraction of samples.

    The paper samples both times from logit-normal(-0.4, 1) in its convention (t = 1 noise) and keeps
    r != t for 25 % of samples on ImageNet; mirrored into ours (t = 0 noise) that is mean +0.4.
    std = 0 draws both times uniformly on [0, 1] instead.
    """
    if std == 0:
        a, b = torch.rand(n, generator=generator, device=device), torch.rand(n, generator=generator, device=device)
    else:
        a = torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))
        b = torch.sigmoid(mean + std * torch.randn(n, generator=generator, device=device))
    t, r = torch.minimum(a, b), torch.maximum(a, b)
    equal = torch.rand(n, generator=generator, device=device) < equal_fraction
    return t, torch.where(equal, t, r)


@dataclass
class Guidance:
    """Classifier-free guidance folded into the training target (see the module docstring)."""

    omega: float = 1.0
    kappa: float = 0.0
    null_label: int = 0

    @property
    def active(self) -> bool:
        return not (self.omega == 1.0 and self.kappa == 0.0)


def guided_velocity(velocity_model: Callable[..., Tensor], x: Tensor, t: Tensor, v_cond: Tensor, labels: Tensor,
                    guidance: Guidance) -> Tensor:
    """v_tilde = omega v_c + kappa u(x, t, t | c) + (1 - omega - kappa) u(x, t, t | null) where the label was kept, else v_c.

    velocity_model(x, t, y=labels) -> the model's instantaneous velocity u(x, t, t | y); evaluated without gradient.
    """
    if not guidance.active:
        return v_cond
    kept = (labels != guidance.null_label).reshape(-1, *([1] * (x.dim() - 1)))
    null = torch.full_like(labels, guidance.null_label)
    with torch.no_grad():
        if guidance.kappa:
            both = velocity_model(torch.cat([x, x]), torch.cat([t, t]), y=torch.cat([labels, null]))
            u_cond, u_null = both.chunk(2)
        else:
            u_cond, u_null = 0.0, velocity_model(x, t, y=null)
    guided = guidance.omega * v_cond + guidance.kappa * u_cond + (1.0 - guidance.omega - guidance.kappa) * u_null
    return torch.where(kept, guided, v_cond).detach()


def average_velocity_and_derivative(model: Callable[..., Tensor], x: Tensor, t: Tensor, r: Tensor, velocity: Tensor,
                                    **model_kwargs: Any) -> tuple[Tensor, Tensor]:
    """(u(x, t, r), du/dt along (velocity, 1, 0)) for model(x, t, r=r, **model_kwargs).

    One forward-mode pass (imgflow.core.jvp): the primal u carries the gradient. A model object that
    must produce its prediction another way (the trainer's handle on a DistributedDataParallel
    wrapper, whose own forward carries the gradient synchronisation) provides a method of this name
    and is asked instead.
    """
    own = getattr(model, "average_velocity_and_derivative", None)
    if own is not None:
        return own(x, t, r, velocity, **model_kwargs)
    return jvp(lambda xx, tt, rr: model(xx, tt, r=rr, **model_kwargs), (x, t, r),
               (velocity, torch.ones_like(t), torch.zeros_like(r)))


def mean_flow_loss(
    model: Callable[..., Tensor],
    path: InterpolantPath,
    data: Tensor,
    t: Tensor,
    r: Tensor,
    *,
    noise: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    guidance: Guidance | None = None,
    reduction: Reduction = "mean",
    adaptive_p: float = 1.0,
    adaptive_eps: float = 1e-3,
    per_sample: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The MeanFlow objective: || u_theta(x_t, t, r) - sg(v + (r - t) du/dt) ||^2, adaptively weighted.

    model(x, t, r=r, **model_kwargs) predicts the average velocity, (B, ...); data, noise: (B, ...);
    t <= r: (B,). Returns the batch mean of the weighted loss, or with per_sample=True the pair
    (weighted (B,), unweighted squared error (B,)) for logging.
    """
    kwargs = model_kwargs or {}
    noise = path.sample_source(data) if noise is None else noise
    x_t = path.interpolate(data, noise, t)
    v = path.interpolant_velocity(data, noise, t)
    if guidance is not None and guidance.active and "y" in kwargs:
        v = guided_velocity(lambda x, tt, y: model(x, tt, y=y, r=tt), x_t, t, v, kwargs["y"], guidance)
    u, du_dt = average_velocity_and_derivative(model, x_t, t, r, v, **kwargs)
    u_target = (v + expand_like(r - t, x_t) * du_dt).detach()
    error = per_sample_reduce((u - u_target) ** 2, reduction)
    weighted = error / (error.detach() + adaptive_eps) ** adaptive_p if adaptive_p else error
    if per_sample:
        return weighted, error.detach()
    return weighted.mean()
