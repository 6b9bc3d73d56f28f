"""Lab 5's graders pass a correct answer and fail the typical wrong ones, naming the mistake where they know it."""

from __future__ import annotations

import pytest
import torch

from tests.grader_helpers import assert_grades
from toy.exercises import check_flow_map_jump, check_mean_flow_loss


def loss(model, data, noise, t, r, *, t_tangent=1.0, r_tangent=None, gap=lambda t, r: r - t, jvp_term=True, detach=True,
         v_of=lambda data, noise: data - noise, x_of=lambda data, noise, t: t * data + (1 - t) * noise, reduce=torch.mean,
         sign=1.0):
    """A student's MeanFlow loss; the keywords write its usual mistakes. r_tangent None: r held fixed by a closure."""
    x_t = x_of(data, noise, t[:, None])
    v = v_of(data, noise)
    if r_tangent is None:
        u, du_dt = torch.func.jvp(lambda x, tt: model(x, tt, r), (x_t, t), (v, torch.full_like(t, t_tangent)))
    else:
        u, du_dt = torch.func.jvp(model, (x_t, t, r), (v, torch.full_like(t, t_tangent), torch.full_like(r, r_tangent)))
    target = v + gap(t, r)[:, None] * du_dt if jvp_term else v
    target = target.detach() if detach else target
    return sign * reduce((u - target) ** 2)


def loss_by_sum_over_dims(model, data, noise, t, r):
    """The same loss written differently: a sum over the 2 dimensions, halved, averaged over the batch."""
    x_t = t[:, None] * data + (1 - t[:, None]) * noise
    v = data - noise
    u, du_dt = torch.func.jvp(lambda x, tt, rr: model(x, tt, r=rr), (x_t, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    return 0.5 * ((u - (v + (r - t)[:, None] * du_dt).detach()) ** 2).sum(dim=1).mean()


def jump(u, x, t, r):
    return x + (r - t)[:, None] * u(x, t, r)


# (grader, correct answers, {wrong answer: words the verdict must contain})
CASES = {
    "mean_flow_loss": (check_mean_flow_loss, [loss, loss_by_sum_over_dims, lambda *a: loss(*a, r_tangent=0.0)], {
        lambda *a: loss(*a, sign=-1.0): "loss has the wrong sign",
        lambda *a: loss(*a, t_tangent=0.0): "tangent (v, 0, 0)",
        lambda *a: loss(*a, t_tangent=1.0, r_tangent=1.0): "tangent (v, 1, 1)",
        lambda *a: loss(*a, gap=lambda t, r: t - r): "(t - r) where (r - t) goes",
        lambda *a: loss(*a, jvp_term=False): "plain flow matching",
        lambda *a: loss(*a, detach=False): "gradient looks like a target that is not detached",
        lambda *a: loss(*a, v_of=lambda data, noise: noise - data): "v = noise - data",
        lambda *a: loss(*a, reduce=lambda s: s.sum(1).mean()): "sum over the 2 dimensions",
        lambda *a: loss(*a, reduce=lambda s: 0.5 * s.mean()): "(ratio 0.5)",
        lambda *a: loss(*a, x_of=lambda data, noise, t: t * noise + (1 - t) * data): "path run backwards",
        lambda *a: loss(*a, gap=lambda t, r: 0.5 * (r - t)): "on input 1 of 2, loss ",
        lambda *a: loss(*a, reduce=lambda s: s.mean(1)): "must be one number (a tensor of shape ()), got (48,)",
        lambda *a: loss(*a).detach(): "carries no gradient",
    }),
    "flow_map_jump": (check_flow_map_jump, [jump, lambda u, x, t, r: x + (r - t).unsqueeze(-1) * u(x, t, r=r)], {
        lambda u, x, t, r: x - (r - t)[:, None] * u(x, t, r): "backwards",
        lambda u, x, t, r: x + (r - t)[:, None] * u(x, r, t): "times swapped",
        lambda u, x, t, r: x + (r - t)[:, None] * u(x, t, t): "instantaneous velocity",
        lambda u, x, t, r: (r - t)[:, None] * u(x, t, r): "without x",
        lambda u, x, t, r: x + u(x, t, r): "on input 2 of 2, looks like u without the factor (r - t)",
        lambda u, x, t, r: x + 0.5 * (r - t)[:, None] * u(x, t, r): "differs by",
    }),
}


@pytest.mark.parametrize("name", CASES)
def test_grader_passes_the_answers_fails_wrong_ones_and_waits_for_a_stub(name):
    assert_grades(*CASES[name])


def test_the_loss_grader_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    check_mean_flow_loss(loss)
    assert torch.equal(torch.rand(3), before)


def test_a_wrong_shape_and_an_exception_are_failures_with_the_reason():
    shape = check_flow_map_jump(lambda u, x, t, r: jump(u, x, t, r).T)
    assert shape.status == "failed" and "shape (2, 6), expected (6, 2)" in shape.detail
    crash = check_flow_map_jump(lambda u, x, t, r: x + (r - t) * u(x, t, r))   # (6,) * (6, 2) does not broadcast
    assert crash.status == "failed" and "RuntimeError" in crash.detail
