"""The course lab's MNIST U-Net, reproduced as a baseline (`LabUNet`).

Faithful to the lab's `MNISTUNet` (channels [32, 64, 128], 2 residual layers, time and
label embeddings of dimension 40, 11 labels with 10 = null), layer for layer:

- time: learned Fourier features sqrt(2) [sin(2 pi w t) | cos(2 pi w t)] with w a
  learnable (1, dim/2) parameter drawn from N(0, 1); labels: nn.Embedding(11, 40);
- init conv: conv3x3 (1 -> c0), BatchNorm, SiLU;
- residual layer: x + block2(block1(x) + time_adapter(t_emb) + y_adapter(y_emb)), each
  block = SiLU, BatchNorm, conv3x3 (in that order, as in the lab), each adapter =
  Linear(d, d), SiLU, Linear(d, c);
- encoder level: residual layers at width c_i, then a stride-2 conv3x3 to c_{i+1};
  the *downsampled* output is kept as the skip;
- midcoder: residual layers at the last width;
- decoder level: x + skip (ADDED, same shape), bilinear x2 upsampling, conv3x3 to c_{i-1},
  residual layers; final conv3x3 (c0 -> 1). PyTorch default initialisation, no zero-init.

Differences from the lab, none of which changes the network: the call is model(x, t, y=None)
(y=None means the null label 10, t may be a scalar, (B,) or the lab's (B, 1, 1, 1)), the
number of input/output channels and of classes are arguments (defaults 1 and 10), and
the input size is checked. BatchNorm makes the output of one sample depend on the rest
of the batch in training mode; use eval() for sampling.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from imgflow.nn.backbones import Backbone, BuiltFor
from imgflow.nn.conditioning import Conditioning, LabFourierEncoder, rename_legacy_keys
from imgflow.nn.unet import count_parameters

__all__ = ["LabFourierEncoder", "LabResidualLayer", "LabUNet"]  # LabFourierEncoder lives in imgflow.nn.conditioning


def _adapter(in_dim: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.SiLU(), nn.Linear(in_dim, channels))


def _block(channels: int) -> nn.Sequential:
    return nn.Sequential(nn.SiLU(), nn.BatchNorm2d(channels), nn.Conv2d(channels, channels, 3, padding=1))


class LabResidualLayer(nn.Module):
    def __init__(self, channels: int, t_embed_dim: int, y_embed_dim: int) -> None:
        super().__init__()
        self.block1 = _block(channels)
        self.block2 = _block(channels)
        self.time_adapter = _adapter(t_embed_dim, channels)
        self.y_adapter = _adapter(y_embed_dim, channels)

    def forward(self, x: Tensor, t_embed: Tensor, y_embed: Tensor) -> Tensor:
        h = self.block1(x)
        h = h + self.time_adapter(t_embed)[:, :, None, None]
        h = h + self.y_adapter(y_embed)[:, :, None, None]
        return x + self.block2(h)


class _Encoder(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_layers: int, t_dim: int, y_dim: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList([LabResidualLayer(c_in, t_dim, y_dim) for _ in range(num_layers)])
        self.downsample = nn.Conv2d(c_in, c_out, 3, stride=2, padding=1)

    def forward(self, x: Tensor, t_embed: Tensor, y_embed: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x, t_embed, y_embed)
        return self.downsample(x)


class _Midcoder(nn.Module):
    def __init__(self, channels: int, num_layers: int, t_dim: int, y_dim: int) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList([LabResidualLayer(channels, t_dim, y_dim) for _ in range(num_layers)])

    def forward(self, x: Tensor, t_embed: Tensor, y_embed: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x, t_embed, y_embed)
        return x


class _Decoder(nn.Module):
    def __init__(self, c_in: int, c_out: int, num_layers: int, t_dim: int, y_dim: int) -> None:
        super().__init__()
        self.upsample = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear"), nn.Conv2d(c_in, c_out, 3, padding=1)
        )
        self.res_blocks = nn.ModuleList([LabResidualLayer(c_out, t_dim, y_dim) for _ in range(num_layers)])

    def forward(self, x: Tensor, t_embed: Tensor, y_embed: Tensor) -> Tensor:
        x = self.upsample(x)
        for block in self.res_blocks:
            x = block(x, t_embed, y_embed)
        return x


class LabUNet(nn.Module):
    """The course lab's MNIST U-Net: model(x, t, y=None) -> (B, out_channels, H, W).

    Args (keyword only):
        channels: width of each level, e.g. [32, 64, 128] (3 levels: 32 -> 16 -> 8).
        num_residual_layers: residual layers per encoder, midcoder and decoder level.
        t_embed_dim, y_embed_dim: widths of the time and label embeddings (40 in the lab).
        num_classes: real classes; the embedding has num_classes + 1 rows, the last being
            the null label (11 rows, null = 10, for MNIST).
        in_channels, out_channels: image channels (1; out defaults to in).
        image_size: H = W of the inputs (the lab resizes MNIST to 32); must be divisible by
            2 ** (len(channels) - 1).
    """

    def __init__(
        self,
        *,
        channels: Sequence[int] = (32, 64, 128),
        num_residual_layers: int = 2,
        t_embed_dim: int = 40,
        y_embed_dim: int = 40,
        num_classes: int = 10,
        in_channels: int = 1,
        out_channels: int | None = None,
        image_size: int = 32,
    ) -> None:
        super().__init__()
        channels = tuple(int(c) for c in channels)
        out_channels = in_channels if out_channels is None else out_channels
        self.config: dict[str, Any] = dict(
            channels=channels,
            num_residual_layers=num_residual_layers,
            t_embed_dim=t_embed_dim,
            y_embed_dim=y_embed_dim,
            num_classes=num_classes,
            in_channels=in_channels,
            out_channels=out_channels,
            image_size=image_size,
        )
        if t_embed_dim != y_embed_dim:
            raise ValueError(f"the shared conditioning embeds time and label at one width; got t_embed_dim {t_embed_dim} "
                             f"and y_embed_dim {y_embed_dim}")
        LabUNetOptions(channels, num_residual_layers, t_embed_dim).validate(image_size)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.image_size = image_size
        self.num_classes = num_classes

        self.init_conv = nn.Sequential(
            nn.Conv2d(in_channels, channels[0], 3, padding=1), nn.BatchNorm2d(channels[0]), nn.SiLU()
        )
        # the lab's learned Fourier time features and its 11-row label table, in the conditioning every backbone shares
        self.cond = Conditioning(t_embed_dim, time_embedding="lab_fourier", num_classes=num_classes)
        pairs = list(zip(channels[:-1], channels[1:]))
        self.encoders = nn.ModuleList(
            [_Encoder(a, b, num_residual_layers, t_embed_dim, y_embed_dim) for a, b in pairs]
        )
        self.decoders = nn.ModuleList(
            [_Decoder(b, a, num_residual_layers, t_embed_dim, y_embed_dim) for a, b in reversed(pairs)]
        )
        self.midcoder = _Midcoder(channels[-1], num_residual_layers, t_embed_dim, y_embed_dim)
        self.final_conv = nn.Conv2d(channels[0], out_channels, 3, padding=1)

    #: the lab's own parameter names (and imgflow's before the shared conditioning) -> this module's
    legacy_renames: typing.ClassVar[dict[str, str]] = {"time_embedder.weights": "cond.time_embed.weights",
                                                       "y_embedder.weight": "cond.class_embed.embedding.weight"}

    @property
    def time_embedder(self) -> nn.Module:
        """The lab's name for the learned Fourier time features."""
        return self.cond.time_embed

    @property
    def y_embedder(self) -> nn.Embedding:
        """The lab's name for the label table (num_classes + 1 rows, the last the null label)."""
        return self.cond.class_embed.embedding

    @property
    def null_label(self) -> int:
        return self.num_classes

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):  # type: ignore[override]
        """Also takes a state dict with the lab's names (time_embedder.weights, y_embedder.weight)."""
        return super().load_state_dict(rename_legacy_keys(state_dict, self.legacy_renames), strict=strict, assign=assign)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return count_parameters(self, trainable_only)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None) -> Tensor:
        """x: (B, C, H, W); t: scalar, (B,) or (B, 1, 1, 1); y: (B,) long, None = null label."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected input of shape (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                f"got {tuple(x.shape)}; build the LabUNet with the data's channels and image_size"
            )
        batch = x.shape[0]
        t_embed = self.cond.time(t, batch, x.device)
        y_embed = self.cond.label(y, batch, x.device)

        h = self.init_conv(x)
        residuals = []
        for encoder in self.encoders:
            h = encoder(h, t_embed, y_embed)
            residuals.append(h)
        h = self.midcoder(h, t_embed, y_embed)
        for decoder in self.decoders:
            h = decoder(h + residuals.pop(), t_embed, y_embed)
        return self.final_conv(h).to(x.dtype)


@dataclass
class LabUNetOptions:
    """[model.lab_unet]: the lab network's level widths, residual layers per level and embedding width (the lab's
    values by default). It always takes labels (its table has num_classes + 1 rows) and one time."""

    channels: tuple[int, ...] = (32, 64, 128)
    num_residual_layers: int = 2
    embed_dim: int = 40

    def validate(self, image_size: int | None = None) -> None:
        """ValueError naming the key for a value out of range, or (given image_size) a depth that cannot halve it."""
        if not self.channels or min(self.channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive integers, got {list(self.channels)}")
        if self.num_residual_layers < 1:
            raise ValueError(f"num_residual_layers must be >= 1, got {self.num_residual_layers}")
        if self.embed_dim < 2 or self.embed_dim % 2:
            raise ValueError(f"embed_dim must be an even number >= 2 (sin and cos pairs), got {self.embed_dim}")
        factor = 2 ** (len(self.channels) - 1)
        if image_size is not None and image_size % factor:
            raise ValueError(f"image_size {image_size} is not divisible by 2**{len(self.channels) - 1} = {factor} for channels "
                             f"{list(self.channels)}; use fewer levels or resize the images to {math.ceil(image_size / factor) * factor}")


def build_lab_unet(options: LabUNetOptions, built_for: BuiltFor) -> LabUNet:
    return LabUNet(channels=options.channels, num_residual_layers=options.num_residual_layers, t_embed_dim=options.embed_dim,
                   y_embed_dim=options.embed_dim, num_classes=max(built_for.num_classes or 1, 1), in_channels=built_for.channels,
                   image_size=built_for.image_size)


LAB_UNET = Backbone("lab_unet", LabUNetOptions, build_lab_unet, labels="always",
                    description="the course lab's MNIST U-Net (BatchNorm, additive skips, learned Fourier time)")
