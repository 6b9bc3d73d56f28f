"""Negative log-likelihood of images in bits/dim under a trained model's probability-flow ODE.

The math (augmented ODE, Hutchinson divergence, dequantisation, bits/dim) is shared and lives in
imgflow.core.likelihood; this module runs it over an image set in batches.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from imgflow.config import ConfigError
from imgflow.core import ModelField, solver_info
from imgflow.core.likelihood import LikelihoodSettings, bits_per_dim, dequantize, log_likelihood
from imgflow.sampler import Sampler


@dataclass
class NLLResult:
    bits_per_dim: float  # mean over images
    bits_per_dim_stderr: float  # standard error of the mean over images (includes Hutchinson noise)
    per_image: list[float]
    num_images: int
    nfe: int  # augmented-ODE evaluations per batch
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_nll(
    sampler: Sampler,
    images_uint8: Tensor,
    labels: Tensor | None = None,
    label_mode: str = "null",
    settings: LikelihoodSettings | None = None,
    *,
    seed: int = 0,
    batch_size: int = 50,
    log: Callable[[str], None] | None = None,
    **changes: Any,
) -> NLLResult:
    """Bits/dim of dequantised images under the model's probability-flow ODE (Hutchinson divergence).

    label_mode "null" scores p(x) with the null label (the unconditional model a class-conditional
    one learns through label dropout), "true" scores p(x | y) with the images' labels; an
    unconditional model ignores it. `settings` (default `LikelihoodSettings()`, the project's one set of
    likelihood defaults; keywords such as solver="euler", num_steps=2 change single fields) says how the
    ODE is integrated. See imgflow.core.likelihood for the dequantisation, the formula and why uniform
    steps fail here.
    """
    settings = dataclasses.replace(settings or LikelihoodSettings(), **changes)
    try:
        settings.check()
    except ValueError as exc:
        raise ConfigError(f"NLL settings: {exc}") from None
    if sampler.codec is not None:
        raise ConfigError("bits/dim needs a pixel-space model: a latent model's likelihood is of its latents, not of the images "
                          "(skip it: --bpd-images 0)")
    if label_mode not in ("null", "true"):
        raise ValueError(f"label_mode must be 'null' or 'true', got {label_mode!r}")
    conditional, device = sampler.conditional, sampler.device
    if conditional and label_mode == "true" and labels is None:
        raise ValueError("label_mode 'true' needs the images' labels")
    model = sampler.model.eval()
    schedule = sampler.path.schedule
    x_all = dequantize(images_uint8, seed)
    dims = x_all[0].numel()
    bpd: list[Tensor] = []
    nfe = 0
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, x_all.shape[0], batch_size)):
        x = x_all[start : start + batch_size].to(device)
        kwargs: dict[str, Any] = {}
        if conditional:
            null = torch.full((x.shape[0],), sampler.spec.num_classes, device=device)
            y = labels[start : start + batch_size].to(device) if label_mode == "true" else null
            kwargs["y"] = y
        field_ = ModelField(model, sampler.record.prediction, schedule, model_kwargs=kwargs)
        res = log_likelihood(field_, x, settings, divergence="hutchinson", seed=seed + 1000 * b + 1)
        bpd.append(bits_per_dim(res.log_prob.double().cpu(), dims))
        nfe = max(nfe, res.nfe)
        if log is not None:
            done = start + x.shape[0]
            log(f"  NLL {done}/{x_all.shape[0]} images: {torch.cat(bpd).mean():.4f} bits/dim so far | {time.perf_counter() - t0:.0f} s")
    values = torch.cat(bpd)
    stderr = float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else float("nan")
    s = settings
    used = {"solver": s.solver, "num_steps": s.num_steps, "num_probes": s.num_probes, "probe": s.probe, "label": label_mode,
            "dequantization": "uniform, width 2/256", "seed": seed}
    adaptive = solver_info(s.solver).evals_per_step is None
    used.update({"rtol": s.rtol, "atol": s.atol} if adaptive else {"grid_power": s.grid_power})
    return NLLResult(float(values.mean()), stderr, values.tolist(), values.numel(), nfe, time.perf_counter() - t0, used)
