"""Lab 5's graders: the MeanFlow loss with one JVP, and the flow map's jump x_r = x_t + (r - t) u(x_t, t, r).

The loss is graded on its value and on its gradient with respect to the network's weights: a target that is not
detached (no stop-gradient) gives the right value and the wrong gradient. The reference is the core's
`mean_flow_loss` (linear path, no adaptive weight: adaptive_p = 0) on small fixed, seeded `toy.MLPFlowMap`s; the
jump's is the core's flow-map solver step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.core import FlowMap, GaussianPath, schedule_from_name
from imgflow.core.grading import Case, CheckResult, grade, scalar_loss, seeded_module
from imgflow.core.jvp import jvp
from imgflow.core.mean_flow import mean_flow_loss
from imgflow.core.solvers import FlowMapSolver
from toy.models import MLPFlowMap

__all__ = ["check_flow_map_jump", "check_mean_flow_loss"]

#: float32 sums over a few hundred terms and a JVP through a small MLP: the student's arithmetic may differ from the
#: library's by rounding (~1e-6 relative); each named mistake moves the loss by >= 1.6 % (the detached target: 0) and the
#: gradient by >= 7 % of its largest entry on these inputs (tests/test_exercises_mean_flow.py)
LOSS_ATOL, LOSS_RTOL = 1e-5, 1e-4
#: a few float32 operations on O(1) numbers
JUMP_ATOL, JUMP_RTOL = 1e-5, 1e-4

_LINEAR = GaussianPath(schedule_from_name("linear"))


def _seeded_model(seed: int) -> MLPFlowMap:
    """A fixed MLPFlowMap, weights tripled so that u depends visibly on x, t and r: every term of the target moves the loss."""
    return seeded_module(lambda: MLPFlowMap(2, (32, 32)), seed, scale=3.0)


def _loss_inputs(seed: int, batch: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(data (B, 2), noise (B, 2), t (B,), r (B,)) with 0 <= t <= r <= 1, the first quarter of the rows r = t."""
    g = torch.Generator().manual_seed(seed)
    data = torch.randn(batch, 2, generator=g) * 2 + torch.tensor([1.0, -0.5])
    noise = torch.randn(batch, 2, generator=g)
    t, r = torch.sort(torch.rand(2, batch, generator=g), dim=0).values
    r = torch.cat([t[: batch // 4], r[batch // 4:]])
    return data, noise, t, r


def _with_gradient(loss_fn: Callable[..., Tensor]) -> Callable[..., tuple[Tensor, Tensor]]:
    """loss_fn(model, data, noise, t, r) -> (the loss, its gradient in the model's weights, flattened)."""

    def run(model: MLPFlowMap, data: Tensor, noise: Tensor, t: Tensor, r: Tensor) -> tuple[Tensor, Tensor]:
        loss = scalar_loss(loss_fn(model, data, noise, t, r), no_gradient_hint=": detach only the target, not u")
        params = list(model.parameters())
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        flat = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])
        return loss.detach(), flat

    return run


def _handmade_loss(model: MLPFlowMap, data: Tensor, noise: Tensor, t: Tensor, r: Tensor, *, t_tangent: float = 1.0,
                   r_tangent: float = 0.0, gap_sign: float = 1.0, jvp_term: bool = True, detach: bool = True,
                   velocity_sign: float = 1.0, reduce: str = "mean", backwards: bool = False) -> Tensor:
    """The MeanFlow loss and its usual misspellings (for the named mistakes): ||u(x_t, t, r) - sg(v + (r - t) du/dt)||^2."""
    x_t = (t[:, None] * noise + (1 - t[:, None]) * data) if backwards else (t[:, None] * data + (1 - t[:, None]) * noise)
    v = velocity_sign * (data - noise)
    u, du_dt = jvp(lambda x, tt, rr: model(x, tt, rr), (x_t, t, r),
                   (v, torch.full_like(t, t_tangent), torch.full_like(r, r_tangent)))
    target = v + gap_sign * (r - t)[:, None] * du_dt if jvp_term else v
    if detach:
        target = target.detach()
    squares = (u - target) ** 2
    return squares.sum(1).mean() if reduce == "sum" else squares.mean()


def check_mean_flow_loss(mean_flow_loss_fn: Callable[..., Tensor]) -> CheckResult:
    """mean_flow_loss_fn(model, data, noise, t, r) -> the scalar MeanFlow loss on the linear path x_t = t data + (1 - t) noise:

        mean over the batch and the dimensions of (u(x_t, t, r) - sg(v + (r - t) du/dt))^2,   v = data - noise,

    du/dt one JVP of model(x, t, r) along (v, 1, 0). Graded on the value and on the gradient in the weights."""
    mistakes = {
        "the tangent (v, 0, 0): t held still in the JVP, so du/dt misses the partial derivative in t": dict(t_tangent=0.0),
        "the tangent (v, 1, 1): r moved with t in the JVP, but du/dt holds r fixed": dict(r_tangent=1.0),
        "(t - r) where (r - t) goes in the target": dict(gap_sign=-1.0),
        "no JVP term: the target is v alone (plain flow matching)": dict(jvp_term=False),
        "a target that is not detached (the value is right; the gradient flows through the JVP term: detach the target)": dict(detach=False),
        "v = noise - data: the velocity points from data to noise": dict(velocity_sign=-1.0),
        "a sum over the 2 dimensions where the mean goes": dict(reduce="sum"),
        "x_t = t noise + (1 - t) data: the path run backwards (here t = 0 is noise, t = 1 data)": dict(backwards=True),
    }
    cases = []
    for seed, batch in ((0, 48), (1, 64)):
        model, inputs = _seeded_model(seed), _loss_inputs(seed + 100, batch)
        reference = _with_gradient(lambda m, d, n, t, r: mean_flow_loss(m, _LINEAR, d, t, r, noise=n, adaptive_p=0.0))
        wrong = {name: _with_gradient(lambda *a, kw=kw: _handmade_loss(*a, **kw))(model, *inputs) for name, kw in mistakes.items()}
        cases.append(Case((model, *inputs), reference(model, *inputs), mistakes=wrong))
    return grade("MeanFlow loss", _with_gradient(mean_flow_loss_fn), cases, atol=LOSS_ATOL, rtol=LOSS_RTOL, names=("loss", "gradient"))


def _average_velocity(x: Tensor, t: Tensor, r: Tensor) -> Tensor:
    """A made-up u(x, t, r) (B, 2) that depends on x, t and r differently, so swapped or missing times show."""
    return torch.stack([-x[:, 1] + 2 * t - r, x[:, 0] * torch.cos(3 * r) + t * r], dim=1)


def check_flow_map_jump(jump: Callable[..., Tensor]) -> CheckResult:
    """jump(u, x, t, r) -> x + (r - t) u(x, t, r): x (B, D), t and r (B,), u(x, t, r) -> (B, D) the average velocity."""
    u = _average_velocity
    cases = []
    for seed, (t0, r0) in ((0, (0.0, 1.0)), (1, (0.25, 0.6))):
        x = torch.randn(6, 2, generator=torch.Generator().manual_seed(seed)) * 2
        t, r = torch.full((6,), t0), torch.full((6,), r0)
        expected = FlowMapSolver(FlowMap(u)).step(x, torch.tensor(t0), torch.tensor(r0 - t0))
        gap = (r - t)[:, None]
        cases.append(Case((u, x, t, r), expected, mistakes={
            "a jump backwards: (t - r) where (r - t) goes": x - gap * u(x, t, r),
            "u evaluated at (x, r, t): the two times swapped": x + gap * u(x, r, t),
            "u(x, t, t): an Euler step with the instantaneous velocity, not the average over [t, r]": x + gap * u(x, t, t),
            "the displacement alone, without x": gap * u(x, t, r),
            "u without the factor (r - t)": x + u(x, t, r)}))
    return grade("flow-map jump", jump, cases, atol=JUMP_ATOL, rtol=JUMP_RTOL)
