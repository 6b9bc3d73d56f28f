"""Lab 3's graders pass a correct answer and fail the typical wrong ones, naming the mistake where they know it; their
references are the library's label dropout, guidance and flow-matching loss."""

from __future__ import annotations

import pytest
import torch

from imgflow.nn.embeddings import apply_label_drop, drop_labels, label_drop_mask
from tests.grader_helpers import assert_grades
from toy.exercises import check_cfg_loss, check_drop_labels, check_guided_velocity
from toy.exercises import guidance as lab3


def null_of(y, n):
    return torch.full_like(y, n)


def guided(model, x, t, y, w, n):
    return (1 - w) * model(x, t, y=null_of(y, n)) + w * model(x, t, y=y)


def cfg_loss(model, data, labels, drop, t, noise, *, sign=1.0, scale=1.0, backwards=False, y=None):
    y = torch.where(drop, model.null_label, labels) if y is None else y
    tt = t[:, None]
    x_t = tt * noise + (1 - tt) * data if backwards else tt * data + (1 - tt) * noise
    return scale * ((model(x_t, t, y=y) - sign * (data - noise)) ** 2).mean()


# (grader, correct answer, {wrong answer: words the verdict must contain})
CASES = {
    "drop_labels": (check_drop_labels, lambda y, p, n, u: torch.where(u < p, n, y), {
        lambda y, p, n, u: torch.where(u > p, n, y): "kept with probability p",
        lambda y, p, n, u: torch.where(u >= p, n, y): "kept with probability p",
        lambda y, p, n, u: torch.where(u < p, 0, y): "set to 0",
        lambda y, p, n, u: torch.where(u < p, -1, y): "set to -1",
        lambda y, p, n, u: torch.where(u < 1 - p, n, y): "differs by",   # p and 1 - p confused
        lambda y, p, n, u: y: "differs by",                              # nothing dropped
    }),
    "guided_velocity": (check_guided_velocity, guided, {
        lambda m, x, t, y, w, n: w * m(x, t, y=null_of(y, n)) + (1 - w) * m(x, t, y=y): "w and 1 - w swapped",
        lambda m, x, t, y, w, n: -guided(m, x, t, y, w, n): "wrong sign",
        lambda m, x, t, y, w, n: m(x, t, y=null_of(y, n)) + w * (m(x, t, y=null_of(y, n)) - m(x, t, y=y)): "wrong way round",
        lambda m, x, t, y, w, n: m(x, t, y=y) + w * (m(x, t, y=y) - m(x, t, y=null_of(y, n))): "other convention",
        lambda m, x, t, y, w, n: guided(m, x, t, y, w, n) / w: "factor is missing or extra",
        lambda m, x, t, y, w, n: m(x, t, y=y): "null label is never used",
        lambda m, x, t, y, w, n: guided(m, x, t, y, w, 0): "differs by",      # class 0 taken for the null label
    }),
    "cfg_loss": (check_cfg_loss, cfg_loss, {
        lambda m, d, lab, dr, t, n: cfg_loss(m, d, lab, dr, t, n, y=lab): "no label dropout",
        lambda m, d, lab, dr, t, n: cfg_loss(m, d, lab, ~dr, t, n): "the mask the wrong way round",
        lambda m, d, lab, dr, t, n: cfg_loss(m, d, lab, dr, t, n, sign=-1.0): "the target with the wrong sign",
        lambda m, d, lab, dr, t, n: cfg_loss(m, d, lab, dr, t, n, backwards=True): "time direction reversed",
        lambda m, d, lab, dr, t, n: cfg_loss(m, d, lab, dr, t, n, scale=2.0): "a sum over the coordinates",
        lambda m, d, lab, dr, t, n: cfg_loss(m, d, lab, dr, t, n, scale=0.5): "ratio 0.5",
        lambda m, d, lab, dr, t, n: cfg_loss(m, d, lab, dr, t, n).detach(): "no gradient",
        lambda m, d, lab, dr, t, n: ((m(t[:, None] * d + (1 - t[:, None]) * n, t, y=torch.where(dr, m.null_label, lab)) - (d - n)) ** 2).mean(1):
            "one number",
    }),
}


@pytest.mark.parametrize("name", CASES)
def test_grader_passes_the_answer_fails_wrong_ones_and_waits_for_a_stub(name):
    assert_grades(*CASES[name])


def test_the_dropout_rule_is_the_librarys():
    """u < p is imgflow.nn.embeddings' rule: the same uniforms drop the same labels as drop_labels / label_drop_mask."""
    y = torch.arange(40) % 10
    for p in (0.1, 0.5, 0.9):
        u = torch.rand(40, generator=torch.Generator().manual_seed(3))
        library = drop_labels(y, p, 10, generator=torch.Generator().manual_seed(3))
        assert torch.equal(library, torch.where(u < p, 10, y))
        mask = label_drop_mask(40, p, generator=torch.Generator().manual_seed(3))
        assert torch.equal(apply_label_drop(y, mask, 10), library)


def test_the_named_loss_mistakes_move_the_loss_by_more_than_two_percent():
    """LOSS_RTOL's comment: every named mistake is far outside the tolerance (1e-4), not within rounding of the answer."""
    for seed, batch in ((6, 32), (7, 48)):   # check_cfg_loss's inputs
        model = lab3._seeded_model(seed)
        g = torch.Generator().manual_seed(seed + 100)
        data = torch.randn(batch, 2, generator=g) * 1.5 + torch.tensor([1.0, -0.5])
        noise, t = torch.randn(batch, 2, generator=g), torch.rand(batch, generator=g)
        labels, u = lab3._labels(seed, batch)
        drop = u < 0.3
        assert 0 < int(drop.sum()) < batch
        with torch.no_grad():
            right = float(cfg_loss(model, data, labels, drop, t, noise))
            for wrong in (cfg_loss(model, data, labels, drop, t, noise, y=labels), cfg_loss(model, data, labels, ~drop, t, noise),
                          cfg_loss(model, data, labels, drop, t, noise, y=torch.full_like(labels, 3)),
                          cfg_loss(model, data, labels, drop, t, noise, sign=-1.0),
                          cfg_loss(model, data, labels, drop, t, noise, backwards=True)):
                assert abs(float(wrong) / right - 1) > 0.02


def test_the_guided_velocity_reference_is_the_cores_guidance_and_the_label_matters():
    model = lab3._seeded_model(3)
    x, t, y = lab3._field_inputs(3)
    with torch.no_grad():
        cond, uncond = model(x, t, y=y), model(x, t, y=null_of(y, 3))
        assert (cond - uncond).abs().max() > 0.1    # the conditional and unconditional fields differ visibly
        assert torch.allclose(guided(model, x, t, y, 3.0, 3), uncond + 3.0 * (cond - uncond), atol=1e-5)
