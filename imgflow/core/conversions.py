"""Conversions between the four parameterisations of a Gaussian path's marginal field.

For x_t = alpha_t data + beta_t noise with noise ~ N(0, I), a network may predict:

- "velocity" u = E[d_alpha data + d_beta noise | x_t]  (flow matching)
- "noise"    noise_hat = E[noise | x_t]                 (DDPM-style)
- "data"     data_hat = E[data | x_t]                   (x-prediction)
- "score"    s = grad log p_t(x_t) = -noise_hat / beta  (Tweedie)

Two linear relations tie them: x = alpha data_hat + beta noise_hat and
u = d_alpha data_hat + d_beta noise_hat. With W = d_alpha beta - alpha d_beta (the Wronskian),
data_hat = (beta u - d_beta x) / W and noise_hat = (d_alpha x - alpha u) / W. Every pair below
is the direct closed form, so a conversion is singular only where the math is: dividing by
alpha (t = 0) to recover the data from a noise prediction, or by beta (t = 1) to recover a
score or a noise from a data prediction. `SINGULAR_AT` lists those ends for each pair.
"""

from __future__ import annotations

from torch import Tensor

from imgflow.core.broadcast import expand_like
from imgflow.core.schedules import Schedule

PREDICTIONS: tuple[str, ...] = ("velocity", "noise", "data", "score")

#: for (source, target): the times where the closed form divides by zero
SINGULAR_AT: dict[tuple[str, str], tuple[float, ...]] = {
    ("velocity", "noise"): (),
    ("velocity", "data"): (),
    ("velocity", "score"): (1.0,),
    ("noise", "velocity"): (0.0,),
    ("noise", "data"): (0.0,),
    ("noise", "score"): (1.0,),
    ("data", "velocity"): (1.0,),
    ("data", "noise"): (1.0,),
    ("data", "score"): (1.0,),
    ("score", "velocity"): (0.0,),
    ("score", "noise"): (),
    ("score", "data"): (0.0,),
}


def convert(
    value: Tensor,
    source: str,
    target: str,
    schedule: Schedule,
    x: Tensor,
    t: Tensor | float,
) -> Tensor:
    """Turn a `source`-type prediction at (x, t) into a `target`-type one.

    Args:
        value: the prediction, shape of x (B, ...).
        source, target: one of "velocity", "noise", "data", "score".
        schedule: the Gaussian path's alpha/beta schedule.
        x: the point x_t, (B, ...).
        t: time, scalar or (B,).
    """
    for name in (source, target):
        if name not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {name!r}; choose one of {', '.join(PREDICTIONS)}")
    if source == target:
        return value
    tt = expand_like(t, x)
    a, b = schedule.alpha(tt), schedule.beta(tt)
    da, db = schedule.d_alpha(tt), schedule.d_beta(tt)
    w = da * b - a * db

    # everything goes through the closed-form (data, noise) pair of the source
    if source == "velocity":
        data = (b * value - db * x) / w if target != "noise" else None
        noise = (da * x - a * value) / w
    elif source == "noise":
        noise = value
        data = (x - b * noise) / a if target != "score" else None
    elif source == "score":
        noise = -b * value
        data = (x - b * noise) / a if target != "noise" else None
    else:  # data
        data = value
        noise = (x - a * data) / b

    if target == "noise":
        return noise
    if target == "data":
        return data
    if target == "score":
        return -noise / b
    return da * data + db * noise  # velocity
