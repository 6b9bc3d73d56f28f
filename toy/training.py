"""One training loop for every objective of the core: flow matching, score matching, interpolant, MeanFlow, distillation.

Each iteration draws data ~ p_data (B, D) from the path, t ~ U[t_min, t_max] (B,), evaluates
loss_fn(model, path, data, t) (a core loss from imgflow.core.losses; it draws the noise) and
takes one Adam step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from imgflow.core import (
    GaussianPath,
    InterpolantPath,
    flow_matching_loss,
    interpolant_loss,
    score_matching_loss,
)
from imgflow.core.flow_map_distillation import TeacherVelocity, lagrangian_distillation_loss, teacher_mean_flow_loss
from imgflow.core.mean_flow import mean_flow_loss
from imgflow.core.progress import progress_bar
from imgflow.core.time_sampling import sample_time_pairs

__all__ = ["train", "train_flow_matching", "train_interpolant", "train_lagrangian_distillation", "train_mean_flow",
           "train_mean_flow_distillation", "train_score_matching"]

#: loss_fn(model, path, data, *times) -> scalar; times as drawn by the loop's `draw_times`
LossFn = Callable[..., Tensor]
#: draw_times(batch_size) -> a tuple of (B,) time tensors
TimeDraw = Callable[[int], tuple[Tensor, ...]]


def train(
    model: nn.Module,
    loss_fn: LossFn,
    path: InterpolantPath,
    *,
    num_iterations: int,
    batch_size: int,
    lr: float = 1e-3,
    t_range: tuple[float, float] = (0.0, 1.0),
    lr_decay: bool = True,
    seed: int | None = None,
    progress: bool = True,
    desc: str = "train",
    draw_times: TimeDraw | None = None,
    fused: bool = False,
) -> list[float]:
    """Minimise E_{data, t} loss_fn(model, path, data, t) with Adam; returns the per-iteration losses.

    Args:
        model: called as model(x (B, D), t (B,)) -> (B, D).
        loss_fn: a core loss, e.g. ``flow_matching_loss``.
        path: supplies data ~ p_data (``path.p_data`` must be set) and the noise source.
        t_range: t is drawn uniformly from [t_min, t_max] (end short of 1 for the score).
        draw_times: instead, draws the loss's time inputs for a batch (e.g. MeanFlow's (t, r) pairs).
        lr_decay: cosine-anneal the learning rate from lr to lr / 100 over the run (a
            noisy regression target is averaged better by a decaying step).
        seed: when given, the run draws from a private copy of the global RNG seeded with it
            (the caller's RNG state is left untouched), so training is reproducible.
        fused: use torch's fused Adam kernel (the same update rule; one kernel per parameter instead of
            about ten small ops, which saves ~0.25 ms of a ~1.3 ms step for the lab's 4 x 64 MLP on one
            CPU thread). Off by default: the for-loop implementation is the one the full-size tables
            were measured with, and the two differ by rounding, which training amplifies.
    """
    t_min, t_max = t_range
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, **({"fused": True} if fused else {}))
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=num_iterations, eta_min=lr / 100)
        if lr_decay
        else None
    )
    history: list[float] = []
    model.train()
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        bar = progress_bar(range(num_iterations), enabled=progress, desc=desc, leave=False, mininterval=1.0)
        for i in bar:
            data = path.sample_conditioning_variable(batch_size)
            times = draw_times(batch_size) if draw_times is not None else (t_min + (t_max - t_min) * torch.rand(batch_size),)
            loss = loss_fn(model, path, data, *times)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            history.append(loss.item())
            if not bar.disable and i % 100 == 0:
                bar.set_postfix(loss=f"{history[-1]:.4f}")
    model.eval()
    return history


def train_flow_matching(model: nn.Module, path: InterpolantPath, **kwargs) -> list[float]:
    """Conditional flow matching (core ``flow_matching_loss``), t ~ U[0, 1]. kwargs: see `train`."""
    kwargs.setdefault("desc", "flow matching")
    return train(model, flow_matching_loss, path, **kwargs)


def train_score_matching(model: nn.Module, path: GaussianPath, delta: float = 0.02, **kwargs) -> list[float]:
    """Denoising score matching (core ``score_matching_loss``), t ~ U[0, 1 - delta].

    The target -noise / beta_t is infinite at t = 1, so the top delta of the interval is left out.
    """
    if not isinstance(path, GaussianPath):
        raise TypeError("score matching needs a GaussianPath")
    kwargs.setdefault("desc", "score matching")
    return train(model, score_matching_loss, path, t_range=(0.0, 1.0 - delta), **kwargs)


def train_interpolant(model: nn.Module, path: InterpolantPath, **kwargs) -> list[float]:
    """The interpolant objective E[1/2 |b|^2 - dI/dt . b] (core ``interpolant_loss``), t ~ U[0, 1]."""
    kwargs.setdefault("desc", "interpolant")
    return train(model, interpolant_loss, path, **kwargs)


def train_mean_flow(model: nn.Module, path: InterpolantPath, *, time_mean: float = 0.0, time_std: float = 1.0,
                    equal_fraction: float = 0.25, adaptive_p: float = 1.0, **kwargs) -> list[float]:
    """MeanFlow (core ``mean_flow_loss``) for a flow-map model u(x, t, r) on (t, r) pairs from ``sample_time_pairs``.

    kwargs: see `train`. The losses are the adaptively weighted ones (about 1 per sample for p = 1).
    """
    kwargs.setdefault("desc", "mean flow")

    def loss_fn(model: nn.Module, path: InterpolantPath, data: Tensor, t: Tensor, r: Tensor) -> Tensor:
        return mean_flow_loss(model, path, data, t, r, reduction="sum", adaptive_p=adaptive_p,
                              num_equal=round(equal_fraction * data.shape[0]))

    def draw(n: int) -> tuple[Tensor, Tensor]:
        return sample_time_pairs(n, "sorted", mean=time_mean, std=time_std, equal_fraction=equal_fraction)

    return train(model, loss_fn, path, draw_times=draw, **kwargs)


def train_mean_flow_distillation(model: nn.Module, path: InterpolantPath, teacher: TeacherVelocity, *, time_mean: float = 0.0,
                                 time_std: float = 1.0, equal_fraction: float = 0.25, adaptive_p: float = 1.0,
                                 equal_target: str = "teacher", tangent_norm: float = 0.0, **kwargs) -> list[float]:
    """Teacher-guided MeanFlow (core ``teacher_mean_flow_loss``): `train_mean_flow` with teacher(x, t) -> v_T(x, t) (B, D)
    (e.g. a Gaussian mixture's exact marginal velocity) as the JVP tangent and in the target. kwargs: see `train`."""
    kwargs.setdefault("desc", "mean flow distillation")

    def loss_fn(model: nn.Module, path: InterpolantPath, data: Tensor, t: Tensor, r: Tensor) -> Tensor:
        return teacher_mean_flow_loss(model, teacher, path, data, t, r, reduction="sum", adaptive_p=adaptive_p,
                                      num_equal=round(equal_fraction * data.shape[0]), equal_target=equal_target,
                                      tangent_norm=tangent_norm)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        return sample_time_pairs(n, "sorted", mean=time_mean, std=time_std, equal_fraction=equal_fraction)

    return train(model, loss_fn, path, draw_times=draw, **kwargs)


def train_lagrangian_distillation(model: nn.Module, path: InterpolantPath, teacher: TeacherVelocity, *, num_iterations: int,
                                  step_fraction: float = 0.5, final_step_fraction: float = 0.1, time_mean: float = 0.0,
                                  time_std: float = 1.0, equal_fraction: float = 0.25, adaptive_p: float = 1.0,
                                  **kwargs) -> list[float]:
    """Discrete Lagrangian distillation (core ``lagrangian_distillation_loss``, no JVP), the step fraction linear from
    step_fraction to final_step_fraction over the run. kwargs: see `train`."""
    kwargs.setdefault("desc", "lagrangian distillation")
    calls = [0]

    def loss_fn(model: nn.Module, path: InterpolantPath, data: Tensor, t: Tensor, r: Tensor) -> Tensor:
        progress = min(1.0, calls[0] / max(num_iterations - 1, 1))
        calls[0] += 1
        return lagrangian_distillation_loss(model, teacher, path, data, t, r, reduction="sum", adaptive_p=adaptive_p,
                                            step_fraction=step_fraction + progress * (final_step_fraction - step_fraction),
                                            num_equal=round(equal_fraction * data.shape[0]))

    def draw(n: int) -> tuple[Tensor, Tensor]:
        return sample_time_pairs(n, "sorted", mean=time_mean, std=time_std, equal_fraction=equal_fraction)

    return train(model, loss_fn, path, draw_times=draw, num_iterations=num_iterations, **kwargs)
