"""Lab 2's graders: the linear schedule, the conditional Gaussian path (its sampler, vector field and score), the
flow- and score-matching losses of one batch, and the score from a velocity prediction.

Conventions (the core's): t = 0 is noise, t = 1 data, x_t = alpha_t z + beta_t eps with z the data point and eps ~ N(0, I);
the linear schedule is alpha_t = t, beta_t = 1 - t. The references are the library's own code: the core's
`LinearSchedule`, `GaussianPath` (interpolate, conditional_vector_field, conditional_score), `flow_matching_loss`,
`score_matching_loss` and `convert(u, "velocity", "score", ...)`, on fixed, seeded inputs. The losses are graded on
small seeded MLPs (`toy.MLPVectorField`, `toy.MLPScore`) whose weights are scaled up so that the model's output, and so
every term of the target, moves the loss.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.core import GaussianPath, convert, flow_matching_loss, schedule_from_name, score_matching_loss
from imgflow.core.grading import Case, CheckResult, grade, loss_value, seeded_module
from toy.models import MLPScore, MLPVectorField

__all__ = [
    "check_alpha_beta",
    "check_conditional_score",
    "check_conditional_vector_field",
    "check_flow_matching_loss",
    "check_sample_conditional_path",
    "check_score_from_velocity",
    "check_score_matching_loss",
]

#: a few float32 operations on O(1) numbers (the fields divide by beta_t >= 0.1 on the graders' times); every named
#: mistake differs from the reference by >= 5 % of its largest entry on these inputs, 500 times the tolerance
ATOL, RTOL = 1e-5, 1e-4
#: float32 means of a few hundred squares: the student's sum may differ from the library's by rounding (~1e-6 relative);
#: each named mistake moves the loss by >= 8 % on these inputs (tests/test_exercises_paths_and_losses.py)
LOSS_ATOL, LOSS_RTOL = 1e-5, 1e-4

_LINEAR_SCHEDULE = schedule_from_name("linear")
_LINEAR = GaussianPath(_LINEAR_SCHEDULE)


def _inputs(seed: int, batch: int = 8, dim: int = 2, t_max: float = 0.9) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(z (B, D) data with an offset, eps (B, D) noise, x (B, D) a point anywhere, t (B, 1) in [0.05, t_max])."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, dim, generator=g) * 2 + torch.tensor([1.5, -1.0])[:dim]
    eps = torch.randn(batch, dim, generator=g)
    x = torch.randn(batch, dim, generator=g) * 2
    t = 0.05 + (t_max - 0.05) * torch.rand(batch, 1, generator=g)
    return z, eps, x, t


# --- exercise 1: the linear schedule ------------------------------------------------------------------------------


def _broadcast_parts(fn: Callable[[Tensor], tuple]) -> Callable[[Tensor], tuple]:
    """fn(t) with every returned number (or one-element tensor) broadcast to t's shape: a constant derivative may be 1.0."""

    def wrapped(t: Tensor) -> tuple:
        out = fn(t)
        if not isinstance(out, (tuple, list)):
            return out
        return tuple(torch.as_tensor(v, dtype=t.dtype).reshape(()).expand(t.shape)
                     if isinstance(v, (int, float)) or (isinstance(v, Tensor) and v.numel() == 1) else v for v in out)

    return wrapped


def check_alpha_beta(alpha_beta: Callable[[Tensor], tuple]) -> CheckResult:
    """alpha_beta(t) -> (alpha_t, beta_t, d alpha_t / dt, d beta_t / dt) of the linear schedule alpha_t = t, beta_t = 1 - t,
    elementwise on t of any shape (a constant derivative may be returned as a number)."""
    s = _LINEAR_SCHEDULE
    cases = []
    for t in (torch.tensor([0.0, 0.1, 0.25, 0.5, 0.8, 1.0])[:, None], torch.rand(5, generator=torch.Generator().manual_seed(3))):
        one = torch.ones_like(t)
        cases.append(Case((t,), (s.alpha(t), s.beta(t), s.d_alpha(t), s.d_beta(t)), mistakes={
            "d_beta = +1: beta_t = 1 - t falls, so its derivative is -1": (t, 1 - t, one, one),
            "the path run backwards (alpha_t = 1 - t, beta_t = t: here t = 0 is noise, t = 1 data)": (1 - t, t, -one, one),
            "the derivatives equal to alpha_t and beta_t themselves": (t, 1 - t, t, 1 - t)}))
    return grade("linear schedule", _broadcast_parts(alpha_beta), cases, atol=ATOL, rtol=RTOL,
                 names=("alpha", "beta", "d_alpha", "d_beta"))


# --- exercise 2: sampling the conditional path --------------------------------------------------------------------


def check_sample_conditional_path(sample_conditional_path: Callable[..., Tensor]) -> CheckResult:
    """sample_conditional_path(z, t, eps) -> x_t = alpha_t z + beta_t eps = t z + (1 - t) eps, a draw of
    p_t(x | z) = N(t z, (1 - t)^2 I) given the noise: z, eps (B, D), t (B, 1)."""
    cases = []
    for seed in (0, 1):
        z, eps, _, t = _inputs(seed)
        cases.append(Case((z, t, eps), _LINEAR.interpolate(z, eps, t), mistakes={
            "t eps + (1 - t) z: noise and data swapped, the path run backwards (here t = 0 is noise, t = 1 data)":
                t * eps + (1 - t) * z,
            "beta_t^2 eps: the variance beta_t^2 where the standard deviation beta_t goes": t * z + (1 - t) ** 2 * eps,
            "the mean alpha_t z alone, without the noise": t * z,
            "z + beta_t eps: the mean is alpha_t z, not z": z + (1 - t) * eps}))
    return grade("conditional path sample", sample_conditional_path, cases, atol=ATOL, rtol=RTOL)


# --- exercises 3 and 4: the conditional vector field and score ----------------------------------------------------


def check_conditional_vector_field(conditional_vector_field: Callable[..., Tensor]) -> CheckResult:
    """conditional_vector_field(x, z, t) -> u_t(x | z) = (d_alpha - d_beta / beta alpha) z + (d_beta / beta) x
    = (z - x) / (1 - t) on the linear Gaussian path: x, z (B, D), t (B, 1) < 1."""
    cases = []
    for seed in (2, 3):
        z, _, x, t = _inputs(seed)
        cases.append(Case((x, z, t), _LINEAR.conditional_vector_field(x, z, t), mistakes={
            "(x - z) / t: the path run backwards (here t = 0 is noise and t = 1 data, x_t = t z + (1 - t) eps)": (x - z) / t,
            "(x - z) / (1 - t), i.e. eps - z: the wrong time direction (the field must carry the noise towards z)":
                (x - z) / (1 - t),
            "z - x: the 1 / beta_t = 1 / (1 - t) is missing": z - x,
            "(z - x) / (1 - t)^2: 1 / beta_t^2 where 1 / beta_t goes": (z - x) / (1 - t) ** 2,
            "z - x / (1 - t): the z term misses its -(d_beta / beta_t) alpha_t = t / (1 - t)": z - x / (1 - t)}))
    return grade("conditional vector field", conditional_vector_field, cases, atol=ATOL, rtol=RTOL)


def check_conditional_score(conditional_score: Callable[..., Tensor]) -> CheckResult:
    """conditional_score(x, z, t) -> grad_x log p_t(x | z) = (alpha_t z - x) / beta_t^2 = (t z - x) / (1 - t)^2 on the
    linear Gaussian path: x, z (B, D), t (B, 1) < 1."""
    cases = []
    for seed in (4, 5):
        z, _, x, t = _inputs(seed)
        cases.append(Case((x, z, t), _LINEAR.conditional_score(x, z, t), mistakes={
            "(x - t z) / (1 - t)^2: the wrong sign (the score points towards the mean alpha_t z)": (x - t * z) / (1 - t) ** 2,
            "(t z - x) / (1 - t): beta_t where beta_t^2 goes (the score divides by the variance)": (t * z - x) / (1 - t),
            "(z - x) / (1 - t)^2: z where the mean alpha_t z = t z goes": (z - x) / (1 - t) ** 2}))
    return grade("conditional score", conditional_score, cases, atol=ATOL, rtol=RTOL)


# --- exercises 5 and 6: the losses --------------------------------------------------------------------------------


def _seeded(cls: type, seed: int) -> torch.nn.Module:
    """A fixed small MLP (2-D, two hidden layers of 32), weights tripled so its output is O(several) and varies with x and t."""
    return seeded_module(lambda: cls(2, (32, 32)), seed, scale=3.0)


def _loss_inputs(seed: int, batch: int, t_max: float) -> tuple[Tensor, Tensor, Tensor]:
    """(z (B, 2), t (B,) in [0.05, t_max], eps (B, 2))."""
    z, eps, _, t = _inputs(seed, batch=batch, t_max=t_max)
    return z, t[:, 0], eps


def _loss_cases(model_class: type, library_loss: Callable[..., Tensor], handmade: Callable[..., Tensor],
                mistakes: dict[str, dict], seeds: tuple[int, int], t_max: float) -> list[Case]:
    """Two batches (64 and 96 rows) on fixed networks: the library's loss as the reference, `handmade(**kw)` for each
    named mistake."""
    cases = []
    for seed, batch in zip(seeds, (64, 96)):
        model, (z, t, eps) = _seeded(model_class, seed), _loss_inputs(seed + 100, batch, t_max=t_max)
        with torch.no_grad():
            expected = library_loss(model, _LINEAR, z, t, noise=eps)
            wrong = {name: handmade(model, z, t, eps, **kw) for name, kw in mistakes.items()}
        cases.append(Case((model, z, t, eps), expected, mistakes=wrong))
    return cases


def _fm_handmade(model, z, t, eps, *, backwards=False, target_sign=1.0, at_data=False, reduce="mean") -> Tensor:
    """The flow-matching loss and its usual misspellings (for the named mistakes)."""
    tt = t[:, None]
    x_t = tt * eps + (1 - tt) * z if backwards else tt * z + (1 - tt) * eps
    pred = model(z if at_data else x_t, t)
    squares = (pred - target_sign * (z - eps)) ** 2
    return squares.sum(1).mean() if reduce == "sum" else squares.mean()


def check_flow_matching_loss(flow_matching_loss_fn: Callable[..., Tensor]) -> CheckResult:
    """flow_matching_loss_fn(model, z, t, eps) -> the scalar loss of one batch on the linear Gaussian path:

        mean over the batch and the D coordinates of (u_theta(x_t, t) - (z - eps))^2,   x_t = t z + (1 - t) eps,

    model(x (B, D), t (B,)) -> (B, D); z, eps (B, D); t (B,). The reference is the core's `flow_matching_loss`."""
    mistakes = {
        "the target eps - z: the wrong time direction (the conditional velocity d_alpha z + d_beta eps is z - eps)":
            dict(target_sign=-1.0),
        "x_t = t eps + (1 - t) z: the path run backwards (here t = 0 is noise, t = 1 data)": dict(backwards=True),
        "the model evaluated at the data z instead of at x_t": dict(at_data=True),
        "a sum over the 2 coordinates where the mean goes": dict(reduce="sum"),
    }
    cases = _loss_cases(MLPVectorField, flow_matching_loss, _fm_handmade, mistakes, seeds=(10, 11), t_max=1.0)
    return grade("flow-matching loss", loss_value(flow_matching_loss_fn), cases, atol=LOSS_ATOL, rtol=LOSS_RTOL,
                 names=("loss",))


def _sm_handmade(model, z, t, eps, *, target="-eps/beta", weighted=False, reduce="mean", backwards=False) -> Tensor:
    """The denoising score-matching loss and its usual misspellings (for the named mistakes)."""
    tt, beta = t[:, None], 1 - t[:, None]
    s = model(tt * eps + beta * z if backwards else tt * z + beta * eps, t)
    goal = {"-eps/beta": -eps / beta, "+eps/beta": eps / beta, "-eps": -eps, "-eps/beta^2": -eps / beta**2}[target]
    squares = (beta * (s - goal)) ** 2 if weighted else (s - goal) ** 2
    return squares.sum(1).mean() if reduce == "sum" else squares.mean()


def check_score_matching_loss(score_matching_loss_fn: Callable[..., Tensor]) -> CheckResult:
    """score_matching_loss_fn(model, z, t, eps) -> the scalar denoising score-matching loss of one batch on the linear Gaussian path:

        mean over the batch and the D coordinates of (s_theta(x_t, t) + eps / beta_t)^2,   x_t = t z + (1 - t) eps,

    the target -eps / beta_t = grad log p_t(x_t | z); t (B,) < 1. The reference is the core's `score_matching_loss`."""
    mistakes = {
        "the target +eps / beta_t: the score is minus the noise over beta_t (it points back towards alpha_t z)":
            dict(target="+eps/beta"),
        "the target -eps: the 1 / beta_t is missing": dict(target="-eps"),
        "the target -eps / beta_t^2: beta_t^2 where beta_t goes": dict(target="-eps/beta^2"),
        "|beta_t s + eps|^2: weighted by beta_t^2 (the noise-prediction form; the library's loss has no weight)":
            dict(weighted=True),
        "a sum over the 2 coordinates where the mean goes": dict(reduce="sum"),
        "x_t = t eps + (1 - t) z: the path run backwards (here t = 0 is noise, t = 1 data)": dict(backwards=True),
    }
    cases = _loss_cases(MLPScore, score_matching_loss, _sm_handmade, mistakes, seeds=(12, 13), t_max=0.9)
    return grade("score-matching loss", loss_value(score_matching_loss_fn), cases, atol=LOSS_ATOL, rtol=LOSS_RTOL,
                 names=("loss",))


# --- exercise 7: the score from a velocity ------------------------------------------------------------------------


def check_score_from_velocity(score_from_velocity: Callable[..., Tensor]) -> CheckResult:
    """score_from_velocity(u, x, alpha, beta, d_alpha, d_beta) -> the score of a Gaussian path from its velocity,

        s = (alpha u - d_alpha x) / (beta (d_alpha beta - alpha d_beta)),

    u, x (B, D); the coefficients at each sample's time (B, 1). Graded on the linear and the cosine schedules against
    the core's `convert(u, "velocity", "score", schedule, x, t)`."""
    cases = []
    for seed, name in ((6, "linear"), (7, "cosine")):
        schedule = schedule_from_name(name)
        _, _, x, t = _inputs(seed)
        u = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed + 50)) * 2
        a, b, da, db = schedule.alpha(t), schedule.beta(t), schedule.d_alpha(t), schedule.d_beta(t)
        w = da * b - a * db
        noise = (da * x - a * u) / w
        cases.append(Case((u, x, a, b, da, db), convert(u, "velocity", "score", schedule, x, t[:, 0]), mistakes={
            "(d_alpha x - alpha u) / (beta W): the wrong sign (the score is -eps_hat / beta, eps_hat = (d_alpha x - alpha u) / W)":
                noise / b,
            "eps_hat = (d_alpha x - alpha u) / W, the noise prediction: the score is -eps_hat / beta": noise,
            "the 1 / W = 1 / (d_alpha beta - alpha d_beta) is missing (W = 1 on the linear schedule, pi / 2 on the cosine)":
                -noise * w / b,
            "-eps_hat / beta^2: beta^2 where beta goes": -noise / b**2}))
    return grade("score from velocity", score_from_velocity, cases, atol=ATOL, rtol=RTOL)
