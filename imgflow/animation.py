"""Animations as GIFs, written by Pillow (no ffmpeg): frames from image trajectories, and the writer.

    samples = Sampler.from_pretrained("mnist").sample(16, steps=20, trajectory=True)
    samples.save_gif("denoising.gif")                  # one grid per solver state, noise -> digits

`save_gif` (imgflow.core.gif) takes any sequence of PIL images (the 2-D lab's `toy.animation` renders
matplotlib frames into it); `image_trajectory_frames` turns a (N, T, C, H, W) trajectory of [-1, 1] images into T grids.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from imgflow.config import ConfigError
from imgflow.core.gif import save_gif
from imgflow.grids import grid_image

if TYPE_CHECKING:
    from PIL import Image


def _check_trajectory(trajectory: Tensor) -> None:
    if trajectory.dim() != 5:
        raise ConfigError(f"an image trajectory is (N, T, C, H, W), got shape {tuple(trajectory.shape)}")


def image_trajectory_frames(trajectory: Tensor, nrow: int = 8, scale: int = 2, padding: int = 2) -> list[Image.Image]:
    """T grid images from a trajectory (N, T, C, H, W) of [-1, 1] images (values outside are clipped).

    Frame k shows every sample at state k in torchvision's make_grid layout (nrow per row), each pixel
    repeated `scale` times (28 px digits are small on a screen).
    """
    from PIL import Image

    _check_trajectory(trajectory)
    if scale < 1:
        raise ConfigError(f"scale must be >= 1, got {scale}")
    frames = []
    for k in range(trajectory.shape[1]):
        image = grid_image(trajectory[:, k], nrow, padding)
        if scale > 1:
            image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
        frames.append(image)
    return frames


def trajectory_strip(trajectory: Tensor, padding: int = 2) -> Image.Image:
    """One picture of a trajectory (N, T, C, H, W): a row per sample, its states from left (noise) to right."""
    _check_trajectory(trajectory)
    n, t = trajectory.shape[:2]
    return grid_image(trajectory.reshape(n * t, *trajectory.shape[2:]), t, padding)


__all__ = ["image_trajectory_frames", "save_gif", "trajectory_strip"]
