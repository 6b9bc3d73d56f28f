"""What a `Sampler` returns: `Samples`, images with their labels, the settings that drew them and how long it took.

    samples.images            # (N, C, H, W) float32 in [-1, 1] on the CPU
    samples.save_grid("digits.png"), samples.to_pil(), samples.grid()
    samples.save_gif("denoising.gif")   # drawn with trajectory=...: one grid per kept solver state
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from imgflow.config import ConfigError
from imgflow.core.sampling_settings import SamplingSettings
from imgflow.files import atomic_write_bytes
from imgflow.grids import grid_image, image_grid_png

if TYPE_CHECKING:
    from PIL import Image


@dataclass
class Samples:
    """Images drawn by a `Sampler`: (N, C, H, W) float32 in [-1, 1] on the CPU, with their labels."""

    images: Tensor
    labels: Tensor | None
    nfe: int
    seconds: float
    settings: SamplingSettings
    class_names: tuple[str, ...] = ()
    #: (N, T, C, H, W) states at `trajectory_times` (T,) when sampled with trajectory=...; the last is `images`
    trajectory: Tensor | None = None
    trajectory_times: Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to_uint8(self) -> Tensor:
        """(N, C, H, W) uint8 pixels, what a saved image holds."""
        return self.images.clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)

    def to_pil(self) -> list[Image.Image]:
        """One PIL image per sample (mode L for one channel, RGB for three)."""
        from PIL import Image

        pixels = self.to_uint8().permute(0, 2, 3, 1).numpy()
        return [Image.fromarray(p[..., 0] if p.shape[-1] == 1 else p) for p in pixels]

    def default_nrow(self) -> int:
        """One class per column when labels cycle through a few classes (the cycle repeated up to about a
        square grid: 3, 7, 3, 7, ... in 10 columns for 100 images of two classes), else about a square."""
        square = math.sqrt(len(self))
        if self.labels is not None:
            seen = self.labels.tolist()
            period = next((p for p in range(1, min(len(seen), 16) + 1) if seen[p:] == seen[:-p] and len(set(seen[:p])) == p), 0)
            if period >= 2:
                return period * max(1, int(square // period))
        return max(1, min(10, math.ceil(square)))

    def grid_png(self, nrow: int | None = None) -> bytes:
        """PNG bytes of the samples in a grid (torchvision's make_grid layout, padding 2)."""
        return image_grid_png(self.images, nrow or self.default_nrow())

    def grid(self, nrow: int | None = None) -> Image.Image:
        """The samples in one PIL image."""
        return grid_image(self.images, nrow or self.default_nrow())

    def save_grid(self, path: str | Path, nrow: int | None = None) -> Path:
        """Write the grid as a PNG atomically (a temporary file, then a rename); returns the path."""
        path = Path(path)
        atomic_write_bytes(path, self.grid_png(nrow))
        return path

    def _trajectory(self) -> Tensor:
        if self.trajectory is None:
            raise ConfigError("these samples carry no trajectory: draw them with sample(..., trajectory=True) "
                              "(every solver state) or trajectory=k (k states)")
        return self.trajectory

    def trajectory_frames(self, nrow: int | None = None, scale: int = 2) -> list[Image.Image]:
        """One grid image per kept state (noise first, the samples last), the layout of `grid`."""
        from imgflow.animation import image_trajectory_frames

        return image_trajectory_frames(self._trajectory(), nrow or self.default_nrow(), scale)

    def save_gif(self, path: str | Path, nrow: int | None = None, fps: float = 8.0, scale: int = 2) -> Path:
        """The sampling process as an animated GIF (Pillow; no ffmpeg), a grid per kept state; returns the path."""
        from imgflow.animation import save_gif

        return save_gif(self.trajectory_frames(nrow, scale), path, fps=fps)

    def trajectory_strip(self) -> Image.Image:
        """A denoising strip: one row per sample, its kept states from noise (left) to sample (right)."""
        from imgflow.animation import trajectory_strip

        return trajectory_strip(self._trajectory())


__all__ = ["Samples"]
