"""Lab 3's graders: label dropout, the classifier-free-guided velocity, and the guidance trainer's loss of one batch.

The references are the library's own: dropout is `imgflow.nn.embeddings.label_drop_mask` + `apply_label_drop`
written out (a label becomes the null label where its uniform draw u < p; `toy` may not import `imgflow.nn`, and
tests/test_exercises_guidance.py checks that this is the library's rule), the guided field is the core's
`ClassifierFreeGuidance`, and the loss is the core's `flow_matching_loss` with `model_kwargs={"y": labels}`, all on a
small fixed, seeded `toy.MLPConditionalField`.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.core import ClassifierFreeGuidance, GaussianPath, flow_matching_loss, schedule_from_name
from imgflow.core.grading import Case, CheckResult, grade, loss_value, seeded_module
from toy.models import MLPConditionalField

__all__ = ["check_cfg_loss", "check_drop_labels", "check_guided_velocity"]

#: labels are integers: equal or not
LABEL_ATOL, LABEL_RTOL = 0.0, 0.0
#: a few float32 operations on O(1) network outputs (the guided field at w = 4 multiplies their rounding by ~7)
FIELD_ATOL, FIELD_RTOL = 1e-5, 1e-4
#: a mean of a few hundred float32 squares: the student's order of summation may differ from the library's by ~1e-6
#: relative; every named mistake moves the loss by more than 2 % on these inputs (tests/test_exercises_guidance.py)
LOSS_ATOL, LOSS_RTOL = 1e-5, 1e-4

NUM_CLASSES = 3
_LINEAR = GaussianPath(schedule_from_name("linear"))


def _seeded_model(seed: int) -> MLPConditionalField:
    """A fixed MLPConditionalField (2-D, 3 classes + the null label 3), weights doubled so that the label visibly
    changes the output (the conditional and unconditional fields then differ, and every wrong mix of them shows)."""
    return seeded_module(lambda: MLPConditionalField(dim=2, num_classes=NUM_CLASSES, hiddens=(32, 32)), seed, scale=2.0)


def _labels(seed: int, batch: int) -> tuple[Tensor, Tensor]:
    """(labels (B,) in 0..2, uniforms (B,) in [0, 1)) from a fixed generator."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, NUM_CLASSES, (batch,), generator=g), torch.rand(batch, generator=g)


def _drop(y: Tensor, drop: Tensor, null_label: int) -> Tensor:
    return torch.where(drop, torch.full_like(y, null_label), y)


def check_drop_labels(drop_labels: Callable[..., Tensor]) -> CheckResult:
    """drop_labels(y (B,), p, null_label, u (B,) uniforms in [0, 1)) -> y with the null label where u < p.

    Each label is dropped with probability P(u < p) = p, as `imgflow.nn.embeddings.drop_labels` does."""
    cases = []
    for seed, p, null in ((0, 0.2, 3), (1, 0.5, 10), (2, 0.9, 3)):
        y, u = _labels(seed, 24)
        cases.append(Case((y, p, null, u), _drop(y, u < p, null), mistakes={
            "labels kept with probability p (dropped where u > p: the comparison the wrong way round)": _drop(y, u > p, null),
            "dropped labels set to 0 instead of the null label": _drop(y, u < p, 0),
            "dropped labels set to -1 instead of the null label (num_classes)": _drop(y, u < p, -1)}))
    return grade("label dropout", drop_labels, cases, atol=LABEL_ATOL, rtol=LABEL_RTOL)


def _field_inputs(seed: int, batch: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 2, generator=g) * 2
    t = torch.rand(batch, generator=g)
    return x, t, torch.randint(0, NUM_CLASSES, (batch,), generator=g)


def check_guided_velocity(guided_velocity: Callable[..., Tensor]) -> CheckResult:
    """guided_velocity(model, x (B, D), t (B,), y (B,), w, null_label) -> (1 - w) u(x, t, null) + w u(x, t, y).

    `model(x, t, y=labels)` is a class-conditional field; the reference is the core's ClassifierFreeGuidance."""
    cases = []
    for seed, w in ((3, 3.0), (4, 1.5), (5, 4.0)):
        model = _seeded_model(seed)
        x, t, y = _field_inputs(seed)
        with torch.no_grad():
            expected = ClassifierFreeGuidance(model, y, w, null_label=model.null_label)(x, t)
            cond = model(x, t, y=y)
            uncond = model(x, t, y=torch.full_like(y, model.null_label))
        cases.append(Case((model, x, t, y, w, model.null_label), expected, mistakes={
            "w and 1 - w swapped (w u_uncond + (1 - w) u_cond)": w * uncond + (1 - w) * cond,
            "the difference the wrong way round: u_uncond + w (u_uncond - u_cond), guidance away from the class":
                uncond + w * (uncond - cond),
            "the other convention, u_cond + w (u_cond - u_uncond): its w is this lab's w - 1": cond + w * (cond - uncond),
            "both evaluations conditional (the null label is never used)": cond,
            "the unconditional field only": uncond}))
    return grade("guided velocity", guided_velocity, cases, atol=FIELD_ATOL, rtol=FIELD_RTOL)


def _handmade_loss(model, data, labels, drop, t, noise, *, y=None, backwards=False, target_sign=1.0) -> Tensor:
    """The loss of the linear path written out, and its usual misspellings (for the named mistakes)."""
    y = _drop(labels, drop, model.null_label) if y is None else y
    tt = t[:, None]
    x_t = tt * noise + (1 - tt) * data if backwards else tt * data + (1 - tt) * noise
    return ((model(x_t, t, y=y) - target_sign * (data - noise)) ** 2).mean()


def check_cfg_loss(cfg_loss: Callable[..., Tensor]) -> CheckResult:
    """cfg_loss(model, data (B, D), labels (B,), drop (B,) bool, t (B,), noise (B, D)) -> the flow-matching loss (a
    number) of the linear path x_t = t data + (1 - t) noise, target data - noise, with the labels where drop is True
    replaced by model.null_label and passed to the model as model(x_t, t, y=labels).

    The reference is flow_matching_loss(model, linear path, data, t, noise=noise, model_kwargs={"y": dropped labels})
    (a mean over coordinates and batch)."""
    cases = []
    for seed, batch in ((6, 32), (7, 48)):
        model = _seeded_model(seed)
        g = torch.Generator().manual_seed(seed + 100)
        data = torch.randn(batch, 2, generator=g) * 1.5 + torch.tensor([1.0, -0.5])
        noise = torch.randn(batch, 2, generator=g)
        t = torch.rand(batch, generator=g)
        labels, u = _labels(seed, batch)
        drop = u < 0.3
        args = (model, data, labels, drop, t, noise)
        with torch.no_grad():
            expected = flow_matching_loss(model, _LINEAR, data, t, noise=noise,
                                          model_kwargs={"y": _drop(labels, drop, model.null_label)})
            null = torch.full_like(labels, model.null_label)
            mistakes = {
                "no label dropout (the unconditional model is never trained)": _handmade_loss(*args, y=labels),
                "the mask the wrong way round (the dropped labels kept, the others nulled)":
                    _handmade_loss(*args, y=torch.where(drop, labels, null)),
                "every label dropped (an unconditional model)": _handmade_loss(*args, y=null),
                "the target with the wrong sign (noise - data)": _handmade_loss(*args, target_sign=-1.0),
                "the time direction reversed (x_t = t noise + (1 - t) data)": _handmade_loss(*args, backwards=True),
                "a sum over the coordinates instead of their mean": 2.0 * expected}
        cases.append(Case(args, expected, mistakes=mistakes))
    return grade("classifier-free-guidance loss", loss_value(cfg_loss), cases, atol=LOSS_ATOL, rtol=LOSS_RTOL)
