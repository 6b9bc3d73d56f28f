"""The KL-autoencoder loss on pixels (imgflow.core.vae): the objective of an autoencoder backbone."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from imgflow.core.vae import RECONSTRUCTIONS, vae_loss
from imgflow.grids import reconstruction_grid_png
from imgflow.nn.autoencoder import reconstructions
from imgflow.objectives.base import FlowSettings, MicroBatch, ObjectiveEntry, Preview


@dataclass
class AutoencoderLossOptions:
    """[flow.autoencoder]: loss = per-pixel reconstruction error (l2 | l1) + beta * KL / D (imgflow.core.vae)."""

    beta: float = 1e-4
    reconstruction: str = "l2"

    def validate(self) -> None:
        if not (self.beta >= 0 and math.isfinite(self.beta)):
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.reconstruction not in RECONSTRUCTIONS:
            raise ValueError(f"reconstruction = {self.reconstruction!r} is not one of: {', '.join(RECONSTRUCTIONS)}")


class AutoencoderObjective:
    """The KL-autoencoder loss on pixels; no times (every sample is logged in the first time bin's place)."""

    def __init__(self, flow: FlowSettings, options: AutoencoderLossOptions, null_label: int | None) -> None:
        self.options = options

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        return torch.zeros(n, device=device), None

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
        reconstruction, mean, logvar = model(batch.data)
        parts = vae_loss(reconstruction, batch.data, mean, logvar, self.options.beta, self.options.reconstruction)
        return parts.total, parts.total.detach(), {"reconstruction": parts.reconstruction.detach(), "kl": parts.kl.detach()}


def reconstruction_preview(preview: Preview) -> bytes:
    """The first training images (half of sample.num_images) above their reconstructions."""
    rows = torch.arange(min(max(preview.num_images // 2, 1), len(preview.data)))
    originals = preview.data.batch(rows.to(preview.data.images.device))[0]
    return reconstruction_grid_png(originals, reconstructions(preview.network, originals))


_NO_PATH = "an autoencoder reconstructs its images: it has no path, prediction or labels"
_NO_SAMPLER = "an autoencoder's grid shows reconstructions of training images (only sample.num_images applies)"

AUTOENCODER_LOSS = ObjectiveEntry(
    "autoencoder", AutoencoderLossOptions, AutoencoderObjective, kind="autoencoder", trains_on_latents=False,
    log_parts=("reconstruction", "kl"), logs_time=False, preview=reconstruction_preview,
    unused_keys={**{f"flow.{k}": _NO_PATH for k in ("schedule", "prediction", "loss_reduction", "label_dropout")},
                 **{f"sample.{k}": _NO_SAMPLER for k in ("solver", "num_steps", "time_grid", "guidance_scale", "seed")}},
)
