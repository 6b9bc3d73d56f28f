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

The loss per sample is the squared error e (reduced as the other losses), reweighted adaptively by
w = 1 / (e + eps)^p with the weight held fixed (p = 0: plain squared error; p = 1 normalises every
sample's error; the paper's best, 1 on ImageNet and 0.75 on CIFAR-10). The paper's eps = 1e-3 is
meant for the per-sample sum of squares S; with a mean over D dimensions (e = S / D) the weight uses
eps / D, so e w = D^(p - 1) S / (S + eps)^p: the sum's objective times a constant (equal for p = 1),
whatever `reduction` reports. One objective under one name for the toy (sum) and the images (mean).

Cheaper steps: rows with r = t need no JVP (their target is v), so a batch whose first `num_equal`
rows have r = t sends only the others through forward-mode AD. A coefficient c on the derivative term,
u_tgt = v + c (r - t) du/dt, anneals from trajectory flow matching (c = 0: every u(x, t, r) regresses
onto the instantaneous velocity, no JVP at all) to MeanFlow (c = 1), the schedule of alpha-Flow's
curriculum in this parametrisation.
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
    computes du/dt another way (the toy's MLP, by hand) provides a method of this name and is asked instead.
    """
    own = getattr(model, "average_velocity_and_derivative", None)
    if own is not None:
        return own(x, t, r, velocity, **model_kwargs)
    return jvp(lambda xx, tt, rr: model(xx, tt, r=rr, **model_kwargs), (x, t, r),
               (velocity, torch.ones_like(t), torch.zeros_like(r)))


def rows(kwargs: dict[str, Any], part: slice) -> dict[str, Any]:
    """The model inputs of rows `part`: every tensor argument sliced along the batch."""
    return {k: v[part] if isinstance(v, Tensor) else v for k, v in kwargs.items()}


def flow_map_outputs(model: Callable[..., Tensor], x: Tensor, t: Tensor, r: Tensor, velocity: Tensor, num_equal: int = 0,
                     **model_kwargs: Any) -> tuple[Tensor, Tensor]:
    """(u(x, t, r) for all B rows with gradient, du/dt for rows [num_equal:] only): rows [:num_equal] have r = t
    and are one ordinary forward pass, the rest one JVP (`average_velocity_and_derivative`).

    A model object that must produce its prediction another way (the trainer's handle on a
    DistributedDataParallel wrapper: one forward pass through the wrapper, whose hooks synchronise the
    gradients) provides a method of this name and is asked instead.
    """
    own = getattr(model, "flow_map_outputs", None)
    if own is not None:
        return own(x, t, r, velocity, num_equal, **model_kwargs)
    k = num_equal
    if k <= 0:
        return average_velocity_and_derivative(model, x, t, r, velocity, **model_kwargs)
    head, tail = slice(0, k), slice(k, None)
    u_equal = model(x[head], t[head], r=t[head], **rows(model_kwargs, head))
    u_jump, du_dt = average_velocity_and_derivative(model, x[tail], t[tail], r[tail], velocity[tail], **rows(model_kwargs, tail))
    return torch.cat([u_equal, u_jump]), du_dt


def adaptive_weight(error: Tensor, p: float, eps: float = 1e-3) -> Tensor:
    """1 / (error + eps)^p, held fixed (no gradient): (B,) -> (B,); p = 0 gives ones."""
    if not p:
        return torch.ones_like(error)
    return 1.0 / (error.detach() + eps) ** p


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
    num_equal: int = 0,
    derivative_scale: float = 1.0,
    velocity: Tensor | None = None,
    tangent_norm: float = 0.0,
    per_sample: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The MeanFlow objective: || u_theta(x_t, t, r) - sg(v + c (r - t) du/dt) ||^2, adaptively weighted.

    model(x, t, r=r, **model_kwargs) predicts the average velocity, (B, ...); data, noise: (B, ...);
    t <= r: (B,). num_equal: the first num_equal rows have r = t (they skip the JVP; their r is not
    read). derivative_scale c: 1 is MeanFlow, 0 trajectory flow matching (no JVP). The error is reduced
    by `reduction` and weighted by `adaptive_weight` with eps meant for the sum (module docstring).
    velocity: the v of the tangent and the target, (B, ...), in place of the conditional velocity (a teacher's
    marginal velocity: imgflow.core.flow_map_distillation; `guidance` is then not applied, the caller folds it in).
    tangent_norm c > 0 normalises the residual (`normalised_target`). Returns the batch mean of the weighted loss,
    or with per_sample=True the pair (weighted (B,), unweighted reduced squared error (B,)) for logging.
    """
    kwargs = model_kwargs or {}
    noise = path.sample_source(data) if noise is None else noise
    x_t = path.interpolate(data, noise, t)
    if velocity is not None:
        v = velocity.detach()
    else:
        v = path.interpolant_velocity(data, noise, t)
        if guidance is not None and guidance.active and "y" in kwargs:
            v = guided_velocity(lambda x, tt, y: model(x, tt, y=y, r=tt), x_t, t, v, kwargs["y"], guidance)
    k = min(max(int(num_equal), 0), x_t.shape[0])
    if derivative_scale == 0 or k == x_t.shape[0]:
        u = model(x_t, t, r=r if k == 0 else torch.cat([t[:k], r[k:]]), **kwargs)
        u_target = v.detach()
    else:
        u, du_dt = flow_map_outputs(model, x_t, t, r, v, k, **kwargs)
        gap = expand_like((r - t)[k:], du_dt)
        u_target = torch.cat([v[:k], v[k:] + derivative_scale * gap * du_dt]).detach()
    return flow_map_regression(u, u_target, reduction=reduction, adaptive_p=adaptive_p, adaptive_eps=adaptive_eps,
                               tangent_norm=tangent_norm, per_sample=per_sample)


def normalised_target(u: Tensor, u_target: Tensor, c: float) -> Tensor:
    """sg(u) - g / (rms(g) + c) with g = u - u_target per sample: the regression keeps its fixed point (g = 0) while
    every sample's step has length below 1 (Align Your Flow's tangent normalisation, sCM's g / (||g|| + c), with the
    root-mean-square over the sample's dimensions so that c means the same at every image size). For a flow map
    f = x_t + (r - t) u, g is -df/dt along the trajectory, the tangent it normalises."""
    g = (u.detach() - u_target).detach()
    rms = g.flatten(1).pow(2).mean(1).sqrt()
    return u.detach() - g / expand_like(rms + c, g)


def flow_map_regression(u: Tensor, u_target: Tensor, *, reduction: Reduction = "mean", adaptive_p: float = 1.0,
                        adaptive_eps: float = 1e-3, tangent_norm: float = 0.0,
                        per_sample: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """|| u - sg(u_target) ||^2 reduced per sample and weighted by `adaptive_weight` (eps meant for the per-sample sum:
    module docstring); tangent_norm c > 0 regresses onto `normalised_target` instead (the logged error stays the
    distance to u_target). u, u_target: (B, ...). The batch mean, or with per_sample the pair (weighted (B,),
    unweighted reduced squared error (B,))."""
    u_target = u_target.detach()
    squares = (u - u_target) ** 2
    error = per_sample_reduce(squares, reduction)
    if tangent_norm > 0:
        fitted = per_sample_reduce((u - normalised_target(u, u_target, tangent_norm)) ** 2, reduction)
    else:
        fitted = error
    per_dim = squares[0].numel() if reduction == "mean" else 1  # error = sum of squares / per_dim
    weighted = fitted * adaptive_weight(fitted, adaptive_p, adaptive_eps / per_dim)
    if per_sample:
        return weighted, error.detach()
    return weighted.mean()
