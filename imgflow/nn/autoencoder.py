"""A KL-regularised convolutional autoencoder (the VAE of latent diffusion, small): images <-> latents.

    encoder: conv3x3 in, per level `num_res_blocks` residual blocks and a stride-2 conv3x3 between
             levels (log2(factor) of them), middle residual block [+ self-attention] + residual block,
             GroupNorm-SiLU-conv3x3 to 2 * latent_channels: the posterior's mean and log-variance;
    decoder: the mirror image (conv3x3 in, middle, per level residual blocks and nearest x2 + conv3x3),
             GroupNorm-SiLU-conv3x3 out to the image's channels (unbounded; images live in [-1, 1]).

An image (B, C, H, W) maps to a latent (B, latent_channels, H / factor, W / factor). The posterior is
q(z | x) = N(mean(x), diag(exp(logvar(x)))); training samples z = mean + exp(logvar / 2) * eps and the
KL term pulls q towards N(0, I) (`imgflow.core.vae.gaussian_kl`). Latent datasets store the mean.

The residual blocks, attention, down- and upsampling are the U-Net's own (imgflow.nn.unet), without the
time embedding: an autoencoder is not conditioned on anything. Its registry entry has kind "autoencoder",
so the trainer trains it with the autoencoder objective and nothing samples from it as a flow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from imgflow.nn.backbones import Backbone, BuiltFor
from imgflow.nn.unet import AttentionBlock, Downsample, GroupNorm32, Upsample, _zero

FACTORS = (1, 2, 4, 8, 16)


class PlainResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3 twice (the second zero-initialised) plus the input (1x1 conv when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int, num_groups: int = 32) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            GroupNorm32(in_channels, num_groups), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1),
            GroupNorm32(out_channels, num_groups), nn.SiLU(), _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.layers(x)


def _middle(channels: int, attention: bool, num_groups: int) -> nn.Sequential:
    layers: list[nn.Module] = [PlainResBlock(channels, channels, num_groups)]
    if attention:
        layers.append(AttentionBlock(channels, num_heads=1, num_groups=num_groups))
    layers.append(PlainResBlock(channels, channels, num_groups))
    return nn.Sequential(*layers)


@dataclass
class AutoencoderOptions:
    """[model.autoencoder]: factor: spatial downsampling (1, 2, 4, 8 or 16; log2(factor) halvings); latent_channels:
    channels of a latent; base_channels x channel_mults: the width of each level (len = log2(factor) + 1; leave it
    out for 1, 2, 2, 4, 4, ...); num_res_blocks per level; attention: self-attention in the middle (the lowest
    resolution); num_groups: GroupNorm groups (clamped to the width like the U-Net's)."""

    factor: int = 4
    latent_channels: int = 4
    base_channels: int = 32
    channel_mults: tuple[int, ...] | None = None
    num_res_blocks: int = 1
    attention: bool = False
    num_groups: int = 32

    @property
    def levels(self) -> int:
        return int(math.log2(self.factor)) + 1

    @property
    def mults(self) -> tuple[int, ...]:
        if self.channel_mults is not None:
            return tuple(self.channel_mults)
        return tuple([1, 2, 2, 4, 4][: self.levels])

    def validate(self, image_size: int | None = None) -> None:
        """ValueError naming the key for a value out of range, or (given image_size) a factor that does not divide it."""
        if self.factor not in FACTORS:
            raise ValueError(f"factor must be one of {', '.join(map(str, FACTORS))}, got {self.factor}")
        if self.latent_channels < 1 or self.base_channels < 1 or self.num_res_blocks < 1 or self.num_groups < 1:
            raise ValueError("latent_channels, base_channels, num_res_blocks and num_groups must be >= 1")
        if len(self.mults) != self.levels or any(m < 1 for m in self.mults):
            raise ValueError(f"channel_mults needs log2(factor) + 1 = {self.levels} positive entries for factor {self.factor}, "
                             f"got {list(self.mults)}")
        if image_size is not None and image_size % self.factor:
            fits = [f for f in FACTORS if image_size % f == 0 and f > 1]
            raise ValueError(f"autoencoder factor {self.factor} needs an image size divisible by it, got {image_size}; "
                             f"use factor {' or '.join(map(str, fits)) or '1'} or an image size divisible by {self.factor}")


class KLAutoencoder(nn.Module):
    """Images (B, channels, S, S) in [-1, 1] <-> latents (B, latent_channels, S / factor, S / factor).

    `encode(x) -> (mean, logvar)`, `decode(z) -> image`, `forward(x, sample=True) -> (reconstruction, mean, logvar)`.
    """

    def __init__(self, channels: int = 1, image_size: int = 28, options: AutoencoderOptions | None = None) -> None:
        super().__init__()
        o = options or AutoencoderOptions()
        o.validate(image_size)
        self.options, self.channels, self.image_size = o, channels, image_size
        self.latent_channels, self.factor = o.latent_channels, o.factor
        widths = [o.base_channels * m for m in o.mults]
        g = o.num_groups

        enc: list[nn.Module] = [nn.Conv2d(channels, widths[0], 3, padding=1)]
        width = widths[0]
        for level, out in enumerate(widths):
            for _ in range(o.num_res_blocks):
                enc.append(PlainResBlock(width, out, g))
                width = out
            if level < len(widths) - 1:
                enc.append(Downsample(width))
        enc += [_middle(width, o.attention, g), GroupNorm32(width, g), nn.SiLU(), nn.Conv2d(width, 2 * o.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv2d(o.latent_channels, width, 3, padding=1), _middle(width, o.attention, g)]
        for level, out in reversed(list(enumerate(widths))):
            for _ in range(o.num_res_blocks + 1):
                dec.append(PlainResBlock(width, out, g))
                width = out
            if level > 0:
                dec.append(Upsample(width))
        dec += [GroupNorm32(width, g), nn.SiLU(), nn.Conv2d(width, channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(latent_channels, S / factor, S / factor) of one image."""
        side = self.image_size // self.factor
        return (self.latent_channels, side, side)

    def _check(self, x: Tensor, shape: tuple[int, int, int], what: str) -> None:
        if x.dim() != 4 or tuple(x.shape[1:]) != shape:
            raise ValueError(f"the autoencoder takes {what} of shape (B, {', '.join(map(str, shape))}), got {tuple(x.shape)}")

    def encode(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean, logvar) of q(z | x), each (B, latent_channels, S / factor, S / factor); logvar clamped to [-30, 20]."""
        self._check(x, (self.channels, self.image_size, self.image_size), "images")
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: Tensor) -> Tensor:
        """Latents (B, latent_channels, s, s) -> images (B, channels, S, S), unclipped."""
        self._check(z, self.latent_shape, "latents")
        return self.decoder(z)

    def forward(self, x: Tensor, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        """(reconstruction of x from z ~ q(z | x) (sample=False: z = mean), mean, logvar)."""
        mean, logvar = self.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if sample else mean
        return self.decode(z), mean, logvar


def build_autoencoder(options: AutoencoderOptions, built_for: BuiltFor) -> KLAutoencoder:
    return KLAutoencoder(built_for.channels, built_for.image_size, options)


AUTOENCODER = Backbone("autoencoder", AutoencoderOptions, build_autoencoder, labels="never", kind="autoencoder",
                       description="KL-regularised convolutional autoencoder (images <-> latents)")


@torch.inference_mode()
def reconstructions(autoencoder: nn.Module, images: Tensor, batch_size: int = 256) -> Tensor:
    """(N, C, H, W) decoded posterior means of images in [-1, 1], clipped to [-1, 1], on the CPU."""
    device = next(autoencoder.parameters()).device
    was_training = autoencoder.training
    autoencoder.eval()
    try:
        out = [autoencoder(images[i:i + batch_size].to(device).float(), sample=False)[0].clamp(-1, 1).float().cpu()
               for i in range(0, len(images), batch_size)]
    finally:
        autoencoder.train(was_training)
    return torch.cat(out)
