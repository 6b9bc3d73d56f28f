"""Images in a grid: one picture of a batch (N, C, H, W) of [-1, 1] images, as a PIL image or PNG bytes.

The layout is torchvision's `make_grid` (padding 2, nrow images per row); values outside [-1, 1] are clipped and
pixels are rounded to the nearest of 0..255. A one-channel batch gives a greyscale (mode L) picture, three
channels an RGB one. Sample grids, GIF frames, denoising strips and reconstruction figures all go through here.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import torch
from torch import Tensor

if TYPE_CHECKING:
    from PIL import Image


def grid_image(images: Tensor, nrow: int = 8, padding: int = 2) -> Image.Image:
    """(N, C, H, W) [-1, 1] images in one PIL image, nrow per row."""
    from PIL import Image
    from torchvision.utils import make_grid

    if images.dim() != 4:
        raise ValueError(f"a grid takes (N, C, H, W) images, got shape {tuple(images.shape)}")
    grid = make_grid(images.detach().float().cpu().clamp(-1, 1) * 0.5 + 0.5, nrow=max(int(nrow), 1), padding=padding)
    pixels = grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels[..., 0] if images.shape[1] == 1 else pixels)


def image_grid_png(images: Tensor, nrow: int = 8, padding: int = 2) -> bytes:
    """PNG bytes of `grid_image(images, nrow, padding)`."""
    buf = io.BytesIO()
    grid_image(images, nrow, padding).save(buf, format="png")
    return buf.getvalue()


def reconstruction_grid_png(images: Tensor, reconstructed: Tensor, nrow: int = 8) -> bytes:
    """PNG bytes of the images (rows of nrow) above their reconstructions, a blank row between."""
    n = images.shape[0]
    rows = -(-n // nrow)
    blank = torch.full((rows * nrow - n + nrow, *images.shape[1:]), -1.0)
    return image_grid_png(torch.cat([images.float().cpu().clamp(-1, 1), blank, reconstructed.float().cpu()]), nrow)


__all__ = ["grid_image", "image_grid_png", "reconstruction_grid_png"]
