"""How good an autoencoder is on held-out images: PSNR, and the reconstruction FID(clf) a latent model cannot beat.

A latent model generates through the decoder, so its samples are at best as good as the decoder's
reconstructions of real images: the FID(clf) of the reconstructions of held-out images is the floor a
latent model of this autoencoder can reach (beside the real-image floor of the same sample size, which
it can never beat either). PSNR is 10 log10(range^2 / MSE) per image with range 2 ([-1, 1] images),
averaged over the images.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imgflow.checkpoint import load_checkpoint
from imgflow.config import ConfigError
from imgflow.data import load_dataset, to_model_input
from imgflow.evaluation.judge import REFERENCE_SPLIT, Judge
from imgflow.files import atomic_write_bytes
from imgflow.grids import reconstruction_grid_png
from imgflow.latents import check_codec_fits, codec_from_checkpoint
from imgflow.nn.autoencoder import reconstructions


def psnr(reconstruction: Tensor, target: Tensor, data_range: float = 2.0) -> Tensor:
    """(N,) PSNR in dB of each image: 10 log10(data_range^2 / mean squared error); inf for a perfect one."""
    mse = (reconstruction.float() - target.float()).flatten(1).square().mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


@dataclass
class AutoencoderReport:
    """Reconstruction quality of an autoencoder on `num_images` held-out images."""

    checkpoint: str
    step: int
    num_images: int
    psnr_db: float
    mse: float
    reconstruction_fid: float | None  # FID(clf) of the reconstructions against the held-out split
    fid_real_train_images: float | None  # FID(clf) of as many real training images: the floor at this sample size
    latent_shape: tuple[int, int, int]
    compression: float  # pixel values per latent value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"{self.checkpoint} (step {self.step}): {self.num_images} held-out images -> latents {self.latent_shape} "
               f"({self.compression:g}x fewer values)",
               f"  PSNR {self.psnr_db:.2f} dB, MSE {self.mse:.5f} (images in [-1, 1])"]
        if self.reconstruction_fid is not None:
            floor = f"; real training images {self.fid_real_train_images:.3f}" if self.fid_real_train_images is not None else ""
            out.append(f"  reconstruction FID(clf) {self.reconstruction_fid:.3f} (the floor of a latent model of it{floor})")
        return out


def evaluate_autoencoder(checkpoint: str | Path, classifier: str | Path | None = None, *, num: int = 1000,
                         data_overrides: dict[str, Any] | None = None, cache_dir: str | Path | None = None,
                         device: str | torch.device = "cpu", baseline: bool = True, figure: str | Path | None = None,
                         log: Callable[[str], None] | None = None) -> AutoencoderReport:
    """PSNR and (with a classifier of the data) reconstruction FID(clf) of the first `num` held-out images.

    figure: also write the first 16 held-out images above their reconstructions to this PNG.
    """
    if num < 2:
        raise ConfigError(f"num must be >= 2, got {num}")
    say = log or (lambda _m: None)
    ckpt = load_checkpoint(checkpoint)
    codec = codec_from_checkpoint(ckpt, device)
    data = copy.deepcopy(ckpt.config.data)
    for key, value in (data_overrides or {}).items():
        setattr(data, key, value)
    held_out = load_dataset(data, REFERENCE_SPLIT)
    check_codec_fits(codec, held_out.spec, str(checkpoint))
    n = min(num, len(held_out))
    images = to_model_input(held_out.images[:n])
    say(f"reconstructing {n} {REFERENCE_SPLIT} images ...")
    recon = reconstructions(codec.autoencoder, images)
    values = psnr(recon, images)
    if figure is not None:
        atomic_write_bytes(Path(figure), reconstruction_grid_png(images[:16], recon[:16]))
    mse = float((recon - images).flatten(1).square().mean())
    rfid = floor = None
    if classifier is not None:
        judge = Judge.load(classifier, data, held_out.spec, cache_dir=cache_dir, device=device, log=say)
        rfid = judge.fid_of(recon)
        floor = judge.real_floor(n) if baseline else None
    c, h, w = codec.latent_shape
    pixels = math.prod(held_out.spec.shape)
    return AutoencoderReport(str(ckpt.path), ckpt.step, n, float(values[torch.isfinite(values)].mean()), mse, rfid, floor,
                             (c, h, w), pixels / (c * h * w))
