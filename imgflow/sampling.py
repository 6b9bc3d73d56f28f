"""Sampling images from a trained model: per-sample noise, solvers, guidance, grids.

Sample i always starts from the noise seeded by (seed, i), and an SDE sampler draws sample
i's Brownian increments from its own generator too, so a result does not depend on the
batch size it was drawn with. Images are returned in [-1, 1], shape (N, C, H, W).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from imgflow.checkpoint import atomic_write_bytes
from imgflow.config import RunConfig
from imgflow.core import (
    ClassifierFreeGuidance,
    InterpolantSDE,
    LearnedVectorFieldODE,
    ModelField,
    make_solver,
    power_time_grid,
)
from imgflow.data import CHANNELS, NUM_CLASSES
from imgflow.factory import build_path, is_class_conditional
from imgflow.seeding import generator

#: time grids by name: uniform, or "late" (power 2: steps shrink towards the data end)
TIME_GRIDS = {"uniform": 1.0, "late": 2.0}


def per_sample_noise(seed: int, indices: range | list[int], shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """(len(indices), *shape) standard normals; row k depends only on (seed, indices[k])."""
    return torch.stack([torch.randn(shape, generator=generator(seed, "init", i)) for i in indices]).to(device)


class PerSampleBrownian:
    """Noise source for Euler-Maruyama: each row draws from its own generator seeded by (seed, i)."""

    def __init__(self, seed: int, indices: range | list[int]) -> None:
        self.generators = [generator(seed, "brownian", i) for i in indices]

    def __call__(self, x: Tensor) -> Tensor:
        draws = [torch.randn(x.shape[1:], generator=g) for g in self.generators]
        return torch.stack(draws).to(device=x.device, dtype=x.dtype)


@dataclass
class SamplerSettings:
    """How to integrate: solver name, steps, grid, guidance, SDE noise level, tolerances."""

    solver: str = "euler"
    num_steps: int = 50
    time_grid: str = "uniform"
    guidance_scale: float = 1.0
    sde_epsilon: float = 1.0
    rtol: float = 1e-4
    atol: float = 1e-4

    @classmethod
    def from_config(cls, cfg: RunConfig) -> "SamplerSettings":
        s = cfg.sample
        return cls(s.solver, s.num_steps, s.time_grid, s.guidance_scale, s.sde_epsilon, s.rtol, s.atol)


def default_labels(num_images: int, classes: list[int] | None = None) -> Tensor:
    """Labels cycling through `classes` (default 0..9): a grid of 10 columns shows one class per column."""
    classes = classes if classes else list(range(NUM_CLASSES))
    return torch.tensor([classes[i % len(classes)] for i in range(num_images)], dtype=torch.long)


@torch.inference_mode()
def sample_images(
    model: nn.Module,
    cfg: RunConfig,
    settings: SamplerSettings,
    num_images: int,
    seed: int = 0,
    labels: Tensor | None = None,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    progress: bool = False,
) -> tuple[Tensor, Tensor | None, int]:
    """Draw num_images samples. Returns (images in [-1, 1] (N, C, H, W) on CPU, labels or None, NFE per batch)."""
    model.eval()
    path = build_path(cfg)
    conditional = is_class_conditional(cfg)
    if settings.guidance_scale != 1.0 and not conditional:
        raise ValueError(f"guidance scale {settings.guidance_scale} needs a class-conditional model; this one is unconditional (use 1)")
    if conditional and labels is None:
        labels = default_labels(num_images)
    shape = (CHANNELS[cfg.data.dataset], cfg.data.image_size, cfg.data.image_size)
    out: list[Tensor] = []
    nfe = 0
    for start in range(0, num_images, batch_size):
        idx = range(start, min(start + batch_size, num_images))
        x = per_sample_noise(seed, idx, shape, device)
        net = model
        if conditional:
            y = labels[idx.start : idx.stop].to(device)
            net = ClassifierFreeGuidance(model, y, settings.guidance_scale, null_label=NUM_CLASSES)
        field = ModelField(net, cfg.flow.prediction, path.schedule)
        if settings.solver == "euler_maruyama":
            dynamics = InterpolantSDE(field, path.schedule, settings.sde_epsilon)
            kwargs = {"noise": PerSampleBrownian(seed, idx)}
        else:
            dynamics = LearnedVectorFieldODE(field)
            kwargs = {"rtol": settings.rtol, "atol": settings.atol} if settings.solver == "adaptive" else {}
        solver = make_solver(settings.solver, dynamics, progress=progress, **kwargs)
        t_start = 1e-3 if 0.0 in dynamics.singular_times else 0.0
        t_end = 1.0 - 1e-3 if 1.0 in dynamics.singular_times else 1.0
        ts = power_time_grid(settings.num_steps, TIME_GRIDS[settings.time_grid], t_start, t_end)
        out.append(solver.simulate(x, ts.to(device)).float().cpu())
        nfe = solver.nfe
    return torch.cat(out), labels, nfe


def image_grid_png(images: Tensor, nrow: int = 8) -> bytes:
    """PNG bytes of a grid of [-1, 1] images (torchvision's make_grid layout)."""
    from torchvision.utils import save_image

    buf = io.BytesIO()
    save_image(images.clamp(-1, 1) * 0.5 + 0.5, buf, nrow=nrow, format="png", padding=2)
    return buf.getvalue()


def save_grid(images: Tensor, path: str | Path, nrow: int = 8) -> Path:
    """Write a PNG grid atomically (temporary file, then rename); returns the path."""
    path = Path(path)
    atomic_write_bytes(path, image_grid_png(images, nrow))
    return path
