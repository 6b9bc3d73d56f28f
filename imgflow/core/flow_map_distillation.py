"""Flow maps distilled from a velocity teacher: MeanFlow on the teacher's velocity, and a JVP-free Lagrangian form.

Conventions of imgflow.core.mean_flow: t = 0 noise, t = 1 data, u(x_t, t, r) the average velocity over
[t, r], x_r = x_t + (r - t) u. A teacher is a trained velocity model v_T(x, t) (its guidance folded in
by the caller); in the 2-D lab the exact mixture velocity is a perfect one.

Eulerian (teacher-guided MeanFlow, `teacher_mean_flow_loss`). The MeanFlow identity
u = v + (r - t) du/dt holds for the marginal velocity v. From scratch, training puts the conditional
velocity v_c = d_alpha data + d_beta noise in its place, whose mean given x_t is v: the same minimiser,
but at small batches its variance dominates the target. The teacher's v_T(x_t, t) replaces it in both
places, the JVP tangent (v_T, 1, 0) and the target u_tgt = v_T + (r - t) du/dt (stop-gradient). The r = t
rows skip the JVP; their target is v_T (`equal_target="teacher"`) or v_c ("data": plain flow matching,
which leaves the instantaneous velocity free to improve on the teacher's). `tangent_step` eps > 0 takes du/dt as a
finite difference along the teacher's Euler step instead of a JVP (consistency distillation's discrete form): a
network that embeds time as sinusoids of 1000 t wiggles in t on scales of 1e-3, which the exact JVP follows and
a difference over eps = 1e-2 averages out.

Lagrangian, discrete (`lagrangian_distillation_loss`): no forward-mode AD. For a step fraction delta
in (0, 1], r' = r - delta (r - t); the student's own jump to r' (no gradient) and one teacher Euler step
from there to r give

    x_r' = x_t + (r' - t) u_sg(x_t, t, r'),     x_r ~ x_r' + (r - r') v_T(x_r', r'),
    u_tgt = (x_r - x_t) / (r - t) = (1 - delta) u_sg(x_t, t, r') + delta v_T(x_r', r').

The exact flow map satisfies it up to the Euler step's O((delta (r - t))^2) error, which vanishes as
delta -> 0 (the step fraction is annealed toward 0, as alpha-Flow anneals toward the JVP form, where
d/dr [(r - t) u(x_t, t, r)] = v(x_r, r) is Lagrangian map distillation). delta = 1 regresses every
u(x_t, t, r) onto v_T(x_t, t). Its cost: one student pass with gradient, one without and one teacher
pass, about 1.7 flow-matching steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from imgflow.core.broadcast import expand_like
from imgflow.core.losses import Reduction
from imgflow.core.mean_flow import flow_map_regression, mean_flow_loss, rows
from imgflow.core.paths import InterpolantPath

#: v_T(x (B, ...), t (B,), **model_kwargs) -> (B, ...): a teacher's velocity (guidance folded in, no gradient needed)
TeacherVelocity = Callable[..., Tensor]

#: what the r = t rows regress onto: the teacher's velocity, or the conditional one (data and noise: flow matching)
EQUAL_TARGETS = ("teacher", "data")


def _equal_velocity(teacher: TeacherVelocity, path: InterpolantPath, data: Tensor, noise: Tensor, x_t: Tensor, t: Tensor,
                    k: int, kwargs: dict[str, Any], equal_target: str) -> Tensor | None:
    """The r = t rows' target velocity, (k, ...), or None when there are none."""
    if k == 0:
        return None
    head = slice(0, k)
    if equal_target == "data":
        return path.interpolant_velocity(data[head], noise[head], t[head])
    return teacher(x_t[head], t[head], **rows(kwargs, head))


def teacher_mean_flow_loss(
    model: Callable[..., Tensor],
    teacher: TeacherVelocity,
    path: InterpolantPath,
    data: Tensor,
    t: Tensor,
    r: Tensor,
    *,
    noise: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    num_equal: int = 0,
    equal_target: str = "teacher",
    reduction: Reduction = "mean",
    adaptive_p: float = 1.0,
    adaptive_eps: float = 1e-3,
    tangent_norm: float = 0.0,
    tangent_step: float = 0.0,
    frozen: Callable[..., Tensor] | None = None,
    per_sample: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """MeanFlow with the teacher's velocity as tangent and target (module docstring): || u - sg(v_T + (r - t) du/dt) ||^2.

    model(x, t, r=r, **model_kwargs): the student, (B, ...); teacher(x, t, **model_kwargs): v_T; the first num_equal
    rows have r = t and regress onto `equal_target` without a JVP. The rest as `mean_flow_loss` (adaptive weight,
    tangent normalisation, per_sample pair). tangent_step eps > 0 replaces the JVP by a finite difference along the
    teacher's Euler step, du/dt ~ (u_sg(x_t + eps v_T, t + eps, r) - u_sg(x_t, t, r)) / eps (`frozen`, default `model`,
    evaluated without gradient): no forward-mode AD, and wiggles of the network in t shorter than eps average out.
    """
    if equal_target not in EQUAL_TARGETS:
        raise ValueError(f"equal_target must be one of {EQUAL_TARGETS}, got {equal_target!r}")
    kwargs = model_kwargs or {}
    noise = path.sample_source(data) if noise is None else noise
    x_t = path.interpolate(data, noise, t)
    k = min(max(int(num_equal), 0), x_t.shape[0])
    tail = slice(k, None)
    with torch.no_grad():
        head = _equal_velocity(teacher, path, data, noise, x_t, t, k, kwargs, equal_target)
        jumps = teacher(x_t[tail], t[tail], **rows(kwargs, tail)) if k < x_t.shape[0] else None
        v = torch.cat([p for p in (head, jumps) if p is not None])
    if tangent_step <= 0:
        return mean_flow_loss(model, path, data, t, r, noise=noise, model_kwargs=kwargs, reduction=reduction, adaptive_p=adaptive_p,
                              adaptive_eps=adaptive_eps, num_equal=k, velocity=v, tangent_norm=tangent_norm, per_sample=per_sample)
    u = model(x_t, t, r=r if k == 0 else torch.cat([t[:k], r[k:]]), **kwargs)
    u_target = v
    if jumps is not None:
        eps = tangent_step
        with torch.no_grad():
            ahead = (frozen or model)(x_t[tail] + eps * jumps, t[tail] + eps, r=r[tail], **rows(kwargs, tail))
            du_dt = (ahead - u[tail].detach()) / eps
            u_target = torch.cat([v[:k], jumps + expand_like((r - t)[tail], du_dt) * du_dt])
    return flow_map_regression(u, u_target, reduction=reduction, adaptive_p=adaptive_p, adaptive_eps=adaptive_eps,
                               tangent_norm=tangent_norm, per_sample=per_sample)


def lagrangian_target(frozen: Callable[..., Tensor], teacher: TeacherVelocity, x_t: Tensor, t: Tensor, r: Tensor,
                      step_fraction: float, **model_kwargs: Any) -> Tensor:
    """(1 - delta) u(x_t, t, r') + delta v_T(x_r', r') with r' = r - delta (r - t), x_r' = x_t + (r' - t) u(x_t, t, r').

    frozen: the student without gradient (its live weights under no_grad, or an EMA); (B, ...) for x_t (B, ...).
    delta = step_fraction in (0, 1]; at delta = 1 the student is not evaluated and the target is v_T(x_t, t).
    """
    if not 0.0 < step_fraction <= 1.0:
        raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
    with torch.no_grad():
        if step_fraction == 1.0:
            return teacher(x_t, t, **model_kwargs)
        r_mid = r - step_fraction * (r - t)
        u_mid = frozen(x_t, t, r=r_mid, **model_kwargs)
        x_mid = x_t + expand_like(r_mid - t, x_t) * u_mid
        return (1.0 - step_fraction) * u_mid + step_fraction * teacher(x_mid, r_mid, **model_kwargs)


def lagrangian_distillation_loss(
    model: Callable[..., Tensor],
    teacher: TeacherVelocity,
    path: InterpolantPath,
    data: Tensor,
    t: Tensor,
    r: Tensor,
    *,
    step_fraction: float,
    frozen: Callable[..., Tensor] | None = None,
    noise: Tensor | None = None,
    model_kwargs: dict[str, Any] | None = None,
    num_equal: int = 0,
    equal_target: str = "teacher",
    reduction: Reduction = "mean",
    adaptive_p: float = 1.0,
    adaptive_eps: float = 1e-3,
    per_sample: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """|| u(x_t, t, r) - sg(`lagrangian_target`) ||^2 on the jump rows, the r = t rows onto `equal_target`; no JVP.

    frozen: the student without gradient (default: `model` under no_grad, i.e. stop-gradient weights). Shapes and
    the weighting as `teacher_mean_flow_loss`.
    """
    if equal_target not in EQUAL_TARGETS:
        raise ValueError(f"equal_target must be one of {EQUAL_TARGETS}, got {equal_target!r}")
    kwargs = model_kwargs or {}
    frozen = frozen or model
    noise = path.sample_source(data) if noise is None else noise
    x_t = path.interpolate(data, noise, t)
    k = min(max(int(num_equal), 0), x_t.shape[0])
    with torch.no_grad():
        head = _equal_velocity(teacher, path, data, noise, x_t, t, k, kwargs, equal_target)
        tail = slice(k, None)
        jumps = (lagrangian_target(frozen, teacher, x_t[tail], t[tail], r[tail], step_fraction, **rows(kwargs, tail))
                 if k < x_t.shape[0] else None)
        u_target = torch.cat([p for p in (head, jumps) if p is not None])
    u = model(x_t, t, r=r if k == 0 else torch.cat([t[:k], r[k:]]), **kwargs)
    return flow_map_regression(u, u_target, reduction=reduction, adaptive_p=adaptive_p, adaptive_eps=adaptive_eps,
                               per_sample=per_sample)
