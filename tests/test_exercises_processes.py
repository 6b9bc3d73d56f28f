"""Lab 1's graders pass a correct answer and fail the typical wrong ones, naming the mistake where they know it."""

from __future__ import annotations

import pytest
import torch

from tests.grader_helpers import assert_grades
from toy.exercises import (
    check_brownian_motion,
    check_euler_maruyama_step,
    check_euler_step,
    check_langevin,
    check_ornstein_uhlenbeck,
)

# (grader, correct answer, {wrong answer: words the verdict must contain})
CASES = {
    "euler": (check_euler_step, lambda u, x, t, h: x + h * u(x, t), {
        lambda u, x, t, h: x - h * u(x, t): "backwards",
        lambda u, x, t, h: x + 0.5 * h * u(x, t): "times 0.5",
        lambda u, x, t, h: x + h * u(x, t + h): "t + h",
    }),
    "euler_maruyama": (check_euler_maruyama_step, lambda f, g, x, t, h, xi: x + f(x, t) * h + g(x, t) * h**0.5 * xi, {
        lambda f, g, x, t, h, xi: x + f(x, t) * h - g(x, t) * h**0.5 * xi: "subtracted",
        lambda f, g, x, t, h, xi: x + f(x, t) * h + g(x, t) * h * xi: "by h instead of sqrt(h)",
        lambda f, g, x, t, h, xi: x + f(x, t) * h: "no noise",
        lambda f, g, x, t, h, xi: x - f(x, t) * h + g(x, t) * h**0.5 * xi: "differs by",
    }),
    "brownian": (check_brownian_motion, lambda x, t, s: (torch.zeros_like(x), s), {
        lambda x, t, s: (torch.zeros_like(x), -s): "diffusion has the wrong sign",
        lambda x, t, s: (torch.zeros_like(x), s**2): "squared",
        lambda x, t, s: (x, s): "drift",
    }),
    "ou": (check_ornstein_uhlenbeck, lambda x, t, th, s: (-th * x, s), {
        lambda x, t, th, s: (th * x, s): "away from 0",
        lambda x, t, th, s: (-th * x, s * s): "squared",
        lambda x, t, th, s: (-x, s): "drift",
    }),
    "langevin": (check_langevin, lambda x, t, score, s: (0.5 * s**2 * score(x), s), {
        lambda x, t, score, s: (-0.5 * s**2 * score(x), s): "drift has the wrong sign",
        lambda x, t, score, s: (s * score(x), s): "sigma * score",
        lambda x, t, score, s: (s**2 * score(x), s): "1/2 is missing",
        lambda x, t, score, s: (0.5 * s**2 * score(x), 0.5 * s**2): "diffusion",
    }),
}


@pytest.mark.parametrize("name", CASES)
def test_grader_passes_the_answer_fails_wrong_ones_and_waits_for_a_stub(name):
    assert_grades(*CASES[name])


def test_diffusion_as_a_number_a_column_or_a_full_tensor_is_the_same_answer():
    for shape in ((), (6, 1), (6, 2)):
        answer = lambda x, t, th, s, shape=shape: (-th * x, torch.full(shape, s) if shape else s)
        assert check_ornstein_uhlenbeck(answer).passed, shape


def test_a_wrong_shape_and_an_exception_are_failures_with_the_reason():
    shape = check_euler_step(lambda u, x, t, h: (x + h * u(x, t)).T)
    assert shape.status == "failed" and "shape (2, 6), expected (6, 2)" in shape.detail and "order of the dimensions" in shape.detail
    crash = check_euler_step(lambda u, x, t, h: x + h * u(x))
    assert crash.status == "failed" and "TypeError" in crash.detail
