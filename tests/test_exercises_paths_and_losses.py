"""Lab 2's graders pass a correct answer and fail the typical wrong ones, naming the mistake where they know it."""

from __future__ import annotations

import math

import pytest
import torch

from tests.grader_helpers import assert_grades
from toy.exercises import (
    check_alpha_beta,
    check_conditional_score,
    check_conditional_vector_field,
    check_flow_matching_loss,
    check_sample_conditional_path,
    check_score_from_velocity,
    check_score_matching_loss,
)


def fm_loss(model, z, t, eps, *, x_of=lambda z, eps, t: t * z + (1 - t) * eps, target_of=lambda z, eps: z - eps,
            at=None, reduce=torch.mean, sign=1.0):
    """A student's flow-matching loss; the keywords write its usual mistakes."""
    x_t = x_of(z, eps, t[:, None])
    pred = model(x_t if at is None else at(z, eps, x_t), t)
    return sign * reduce((pred - target_of(z, eps)) ** 2)


def sm_loss(model, z, t, eps, *, target_of=lambda eps, beta: -eps / beta, weight=lambda beta: 1.0, reduce=torch.mean,
            x_of=lambda z, eps, t: t * z + (1 - t) * eps):
    """A student's denoising score-matching loss; the keywords write its usual mistakes."""
    beta = 1 - t[:, None]
    s = model(x_of(z, eps, t[:, None]), t)
    return reduce((weight(beta) * (s - target_of(eps, beta))) ** 2)


def score_from_velocity(u, x, a, b, da, db):
    return (a * u - da * x) / (b * (da * b - a * db))


# (grader, correct answers, {wrong answer: words the verdict must contain})
CASES = {
    "alpha_beta": (check_alpha_beta, [
        lambda t: (t, 1 - t, torch.ones_like(t), -torch.ones_like(t)),
        lambda t: (t, 1 - t, 1.0, -1.0),                       # constant derivatives as numbers
        lambda t: (t, 1 - t, torch.tensor(1.0), torch.tensor(-1.0)),
    ], {
        lambda t: (t, 1 - t, 1.0, 1.0): "d_beta looks like d_beta = +1",
        lambda t: (1 - t, t, -1.0, 1.0): "alpha looks like the path run backwards",
        lambda t: (-t, 1 - t, 1.0, -1.0): "alpha has the wrong sign",
        lambda t: (t, 1 - t, 0.5, -1.0): "d_alpha is the expected value times 0.5",
        lambda t: (t, 1 - t, t, 1 - t): "d_alpha looks like the derivatives equal to alpha_t and beta_t",
        lambda t: (t, 1 - t, 1.0): "returned 3 value(s), expected 4",
    }),
    "sample_conditional_path": (check_sample_conditional_path, [
        lambda z, t, eps: t * z + (1 - t) * eps,
        lambda z, t, eps: torch.lerp(eps, z, t.expand_as(z)),
    ], {
        lambda z, t, eps: t * eps + (1 - t) * z: "path run backwards",
        lambda z, t, eps: t * z + (1 - t) ** 2 * eps: "the variance beta_t^2",
        lambda z, t, eps: t * z: "without the noise",
        lambda z, t, eps: -(t * z + (1 - t) * eps): "wrong sign",
        lambda z, t, eps: 2 * (t * z + (1 - t) * eps): "times 2",
        lambda z, t, eps: t * z - (1 - t) * eps: "differs by",
        lambda z, t, eps: (t * z + (1 - t) * eps).T: "shape (2, 8), expected (8, 2)",
    }),
    "conditional_vector_field": (check_conditional_vector_field, [
        lambda x, z, t: (z - x) / (1 - t),
        lambda x, z, t: (1 + t / (1 - t)) * z - x / (1 - t),          # the general formula, unsimplified
        lambda x, z, t: z - (x - t * z) / (1 - t),                     # z - eps, eps recovered from x
    ], {
        lambda x, z, t: (x - z) / t: "path run backwards",
        lambda x, z, t: (x - z) / (1 - t): "wrong time direction",
        lambda x, z, t: (x - t * z) / (1 - t) - z: "wrong time direction",   # eps - z written out
        lambda x, z, t: z - x: "1 / beta_t = 1 / (1 - t) is missing",
        lambda x, z, t: (z - x) / (1 - t) ** 2: "1 / beta_t^2 where 1 / beta_t goes",
        lambda x, z, t: z - x / (1 - t): "the z term misses",
        lambda x, z, t: 0.5 * (z - x) / (1 - t): "times 0.5: a factor is missing or extra",
    }),
    "conditional_score": (check_conditional_score, [
        lambda x, z, t: (t * z - x) / (1 - t) ** 2,
        lambda x, z, t: -(x - t * z) / (1 - t).pow(2),
    ], {
        lambda x, z, t: (x - t * z) / (1 - t) ** 2: "the wrong sign",
        lambda x, z, t: (t * z - x) / (1 - t): "beta_t where beta_t^2 goes",
        lambda x, z, t: (z - x) / (1 - t) ** 2: "z where the mean alpha_t z",
        lambda x, z, t: 0.5 * (t * z - x) / (1 - t) ** 2: "times 0.5",
    }),
    "flow_matching_loss": (check_flow_matching_loss, [
        fm_loss,
        lambda model, z, t, eps: torch.nn.functional.mse_loss(model(t[:, None] * z + (1 - t[:, None]) * eps, t), z - eps),
        lambda model, z, t, eps: 0.5 * ((model(t[:, None] * z + (1 - t[:, None]) * eps, t) - (z - eps)) ** 2).sum(1).mean(),
    ], {
        lambda *a: fm_loss(*a, target_of=lambda z, eps: eps - z): "wrong time direction",
        lambda *a: fm_loss(*a, x_of=lambda z, eps, t: t * eps + (1 - t) * z): "path run backwards",
        lambda *a: fm_loss(*a, at=lambda z, eps, x_t: z): "evaluated at the data z",
        lambda *a: fm_loss(*a, reduce=lambda s: s.sum(1).mean()): "sum over the 2 coordinates",
        lambda *a: fm_loss(*a, sign=-1.0): "loss has the wrong sign",
        lambda *a: fm_loss(*a, reduce=lambda s: 0.5 * s.mean()): "(ratio 0.5)",
        lambda *a: fm_loss(*a, reduce=lambda s: s.mean(1)): "must be one number (a tensor of shape ()), got (64,)",
        lambda *a: fm_loss(*a).detach(): "carries no gradient",
        lambda *a: fm_loss(*a).item(): "must be a tensor (that carries the gradient), got a float: no .item()",
    }),
    "score_matching_loss": (check_score_matching_loss, [
        sm_loss,
        lambda model, z, t, eps: torch.nn.functional.mse_loss(model(t[:, None] * z + (1 - t[:, None]) * eps, t), -eps / (1 - t[:, None])),
    ], {
        lambda *a: sm_loss(*a, target_of=lambda eps, beta: eps / beta): "target +eps / beta_t",
        lambda *a: sm_loss(*a, target_of=lambda eps, beta: -eps): "the 1 / beta_t is missing",
        lambda *a: sm_loss(*a, target_of=lambda eps, beta: -eps / beta**2): "beta_t^2 where beta_t goes",
        lambda *a: sm_loss(*a, weight=lambda beta: beta): "weighted by beta_t^2",
        lambda *a: sm_loss(*a, reduce=lambda s: s.sum(1).mean()): "sum over the 2 coordinates",
        lambda *a: sm_loss(*a, reduce=lambda s: 0.5 * s.mean()): "(ratio 0.5)",
        lambda *a: sm_loss(*a, x_of=lambda z, eps, t: t * eps + (1 - t) * z): "path run backwards",
        lambda *a: sm_loss(*a, target_of=lambda eps, beta: -eps / (beta + 0.1)): "on input 1 of 2, loss is ",   # unnamed: the two numbers
        lambda *a: sm_loss(*a).detach(): "carries no gradient",
    }),
    "score_from_velocity": (check_score_from_velocity, [
        score_from_velocity,
        lambda u, x, a, b, da, db: -((da * x - a * u) / (da * b - a * db)) / b,
    ], {
        lambda u, x, a, b, da, db: -score_from_velocity(u, x, a, b, da, db): "the wrong sign",
        lambda u, x, a, b, da, db: (da * x - a * u) / (da * b - a * db): "the noise prediction",
        lambda u, x, a, b, da, db: (a * u - da * x) / b: "1 / W = 1 / (d_alpha beta - alpha d_beta) is missing",
        lambda u, x, a, b, da, db: (a * u - da * x) / (b**2 * (da * b - a * db)): "beta^2 where beta goes",
        lambda u, x, a, b, da, db: (a * u - da * x) / (b * (da * b + a * db)): "differs by",
        lambda u, x, a, b, da, db: (a * u - da * x) / (1 - a): "on input 2 of 2",     # the linear schedule's formula only
    }),
}


@pytest.mark.parametrize("name", CASES)
def test_grader_passes_the_answer_fails_wrong_ones_and_waits_for_a_stub(name):
    assert_grades(*CASES[name])


def test_the_loss_graders_leave_the_global_rng_alone():
    state = torch.random.get_rng_state()
    check_flow_matching_loss(fm_loss)
    check_score_matching_loss(sm_loss)
    assert torch.equal(state, torch.random.get_rng_state())


def test_score_from_velocity_is_graded_where_the_wronskian_is_not_one():
    """The linear schedule's W = 1 hides a missing 1/W; the cosine schedule's W = pi/2 shows it."""
    from imgflow.core import schedule_from_name

    cosine = schedule_from_name("cosine")
    t = torch.rand(5)
    w = cosine.d_alpha(t) * cosine.beta(t) - cosine.alpha(t) * cosine.d_beta(t)
    assert torch.allclose(w, torch.full_like(w, math.pi / 2))
    verdict = check_score_from_velocity(lambda u, x, a, b, da, db: (a * u - da * x) / b)
    assert verdict.status == "failed" and verdict.detail.startswith("on input 2 of 2")
