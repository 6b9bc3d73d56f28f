"""Time- and class-conditioned U-Net (DDPM / improved-DDPM / torchcfm layout).

The layout follows the U-Net of Ho et al. (DDPM) in the improved-DDPM code that torchcfm
(Tong et al.) uses for its CIFAR-10 flow-matching recipe:

- time: sinusoids of 1000 t (or random Fourier features of t) on `base_channels`
  features -> Linear-SiLU-Linear to `time_embed_dim` (default 4 * base_channels); the class
  embedding (num_classes real rows + 1 null row) is added to it;
- encoder: conv3x3 in, then per level `num_res_blocks` residual blocks (each followed by
  self-attention when the level's spatial size is in `attention_resolutions`) and a
  stride-2 conv3x3 between levels; every encoder output is kept as a skip;
- middle: residual block, self-attention, residual block;
- decoder: per level `num_res_blocks + 1` residual blocks on [h, skip] concatenated along
  channels (+ attention as in the encoder), nearest x2 upsampling + conv3x3 between levels;
- out: GroupNorm, SiLU, conv3x3, zero-initialised (the untrained model outputs 0).

Residual block: GroupNorm-SiLU-conv3x3, + Linear(SiLU(emb)) (or a FiLM scale/shift of the
second norm when `scale_shift=True`), GroupNorm-SiLU-Dropout-conv3x3 (zero-initialised),
plus the input (through a 1x1 conv when the width changes). GroupNorm computes in float32
and the number of groups is clamped to a divisor of the width that leaves >= 4 channels
per group, so small widths work (and keep their conditioning; see GroupNorm32).

`UNet()` with its defaults is the published CIFAR-10 configuration (base 128, multipliers
(1, 2, 2, 2), 2 blocks per level, attention at 16x16 with 4 heads of 64, dropout 0.1):
35,746,307 parameters, the ~35.7 M of DDPM / torchcfm.

Image size: with L = len(channel_mults) levels the input is halved L - 1 times, so
image_size must be divisible by 2 ** (L - 1): 28x28 MNIST works with 3 levels (28, 14, 7),
not with 4 (7 cannot be halved). The constructor rejects a mismatch with a ValueError
naming the fix, and forward rejects inputs of another size.
"""

from __future__ import annotations

import math
import typing
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from imgflow.nn.backbones import Backbone, BuiltFor
from imgflow.nn.conditioning import Conditioning, ConditioningOptions

__all__ = [
    "AttentionBlock",
    "Downsample",
    "GroupNorm32",
    "ResBlock",
    "UNet",
    "Upsample",
    "check_geometry",
    "count_parameters",
    "norm_groups",
]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (buffers such as fixed Fourier frequencies are not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _largest_divisor_at_most(n: int, cap: int) -> int:
    for d in range(min(n, max(cap, 1)), 0, -1):
        if n % d == 0:
            return d
    return 1


#: fewest channels a GroupNorm group may hold (see GroupNorm32)
MIN_CHANNELS_PER_GROUP = 4


def norm_groups(num_channels: int, num_groups: int = 32, min_channels_per_group: int = MIN_CHANNELS_PER_GROUP) -> int:
    """Groups actually used: the largest divisor of num_channels that is at most num_groups
    and leaves at least min_channels_per_group channels in every group (at least 1 group)."""
    return _largest_divisor_at_most(num_channels, min(num_groups, num_channels // min_channels_per_group))


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (bf16/fp16 statistics are too coarse), cast back after.

    The number of groups is clamped (`norm_groups`) to divide the width and to keep at
    least 4 channels per group: GroupNorm(32) on 256 or 128 channels stays 32 groups (the
    published configurations), on 32 channels it becomes 8, on 8 channels 2. The floor
    matters for conditioning: a residual block adds the time/class embedding as one
    constant per channel right before a GroupNorm, and a group of ONE channel (instance
    norm) subtracts exactly that constant -- the network would silently ignore t and y.
    """

    def __init__(
        self,
        num_channels: int,
        num_groups: int = 32,
        eps: float = 1e-5,
        min_channels_per_group: int = MIN_CHANNELS_PER_GROUP,
    ) -> None:
        super().__init__(norm_groups(num_channels, num_groups, min_channels_per_group), num_channels, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        w = self.weight.float() if self.weight is not None else None
        b = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block conditioned on an embedding vector (B, emb_dim)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float = 0.0,
        num_groups: int = 32,
        scale_shift: bool = False,
    ) -> None:
        super().__init__()
        self.scale_shift = scale_shift
        self.in_layers = nn.Sequential(
            GroupNorm32(in_channels, num_groups), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels if scale_shift else out_channels))
        self.out_norm = GroupNorm32(out_channels, num_groups)
        self.out_layers = nn.Sequential(
            nn.SiLU(), nn.Dropout(dropout), _zero(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.in_layers(x)
        e = self.emb_layers(emb)[:, :, None, None]
        if self.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            h = self.out_norm(h) * (1 + scale) + shift
        else:
            h = self.out_norm(h + e)
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H * W positions, residual, zero-initialised output."""

    def __init__(self, channels: int, num_heads: int = 4, head_channels: int | None = None, num_groups: int = 32) -> None:
        super().__init__()
        if head_channels is not None:
            if channels % head_channels:
                raise ValueError(f"attention width {channels} is not divisible by head_channels {head_channels}")
            num_heads = channels // head_channels
        # clamp like GroupNorm so that small widths still work
        self.num_heads = _largest_divisor_at_most(channels, num_heads)
        self.norm = GroupNorm32(channels, num_groups)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        qkv = self.qkv(self.norm(x))
        # contiguous (tokens, head dim) rows let SDPA use its fused CPU/GPU kernels instead of the
        # math fallback (3x slower here), which it takes for a strided last dimension
        q, k, v = rearrange(qkv, "b (three heads d) h w -> three b heads (h w) d", three=3, heads=self.num_heads).contiguous()
        out = F.scaled_dot_product_attention(q, k, v)
        out = rearrange(out, "b heads (h w) d -> b (heads d) h w", h=h, w=w)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Stride-2 conv3x3: (B, C, H, W) -> (B, C, H/2, W/2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 then conv3x3: (B, C, H, W) -> (B, C, 2H, 2W)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class EmbedSequential(nn.Sequential):
    """nn.Sequential that hands the embedding to the residual blocks it holds."""

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # type: ignore[override]
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


def check_geometry(image_size: int, channel_mults: Sequence[int], attention_resolutions: Sequence[int] = ()) -> list[int]:
    """The spatial size of each level, or a ValueError naming the fix.

    With L = len(channel_mults) levels the input is halved L - 1 times, so image_size must be
    divisible by 2 ** (L - 1); every attention resolution must be one of the level sizes.
    """
    channel_mults = tuple(channel_mults)
    levels = len(channel_mults)
    factor = 2 ** (levels - 1)
    if image_size % factor:
        fit = max(k for k in range(1, levels + 1) if image_size % 2 ** (k - 1) == 0)
        padded = math.ceil(image_size / factor) * factor
        raise ValueError(
            f"image_size {image_size} is not divisible by 2**{levels - 1} = {factor} for channel_mults "
            f"{channel_mults}; use {fit} level{'s' if fit > 1 else ''} (e.g. {channel_mults[:fit]}) "
            f"or pad the images to {padded}"
        )
    resolutions = [image_size // 2**i for i in range(levels)]
    unknown = sorted(set(attention_resolutions) - set(resolutions))
    if unknown:
        raise ValueError(
            f"attention_resolutions {unknown} are not among this U-Net's spatial sizes {resolutions} "
            f"(image_size {image_size}, {levels} levels); pick sizes from that list"
        )
    return resolutions


class UNet(nn.Module):
    """Time- and class-conditioned U-Net: model(x, t, y=None) -> tensor shaped like x.

    Args (keyword only):
        in_channels: image channels (1 for MNIST, 3 for CIFAR-10).
        out_channels: output channels, default in_channels.
        image_size: H = W of the inputs; must be divisible by 2 ** (len(channel_mults) - 1).
        base_channels: width of the first level.
        channel_mults: width multiplier of each level; one level per entry.
        num_res_blocks: residual blocks per level in the encoder (decoder: one more).
        attention_resolutions: spatial sizes (e.g. (16,) for CIFAR-10, (7,) or (14,) for
            28x28) whose levels get self-attention; each must be one of the level sizes.
        num_heads: attention heads (clamped to a divisor of the width);
        head_channels: if given, width per head instead (heads = width // head_channels).
        dropout: dropout before the last conv of every residual block.
        num_classes: None for an unconditional model; else labels 0..num_classes-1 plus the
            null label `num_classes` (what y=None means).
        time_embedding: "sinusoidal" (of 1000 t) or "fourier" (random frequencies of t).
        time_embed_dim: width of the time/class embedding, default 4 * base_channels.
        fourier_scale, learnable_fourier: std and trainability of the Fourier frequencies.
        num_groups: GroupNorm groups (clamped per width to a divisor leaving >= 4 channels
            per group; see GroupNorm32).
        scale_shift: FiLM (scale, shift) conditioning of the residual blocks instead of
            adding the embedding (improved-DDPM's use_scale_shift_norm).
        mid_attention: self-attention in the middle block.
        time_scale: the sinusoids see time_scale * t (1000: DDPM's step counts). Their t-derivative grows
            with it, and a flow map's training target contains du/dt: MeanFlow models use a small scale.
        second_time: None for a velocity model u(x, t); "interval" (embed r - t, the paper's
            choice) or "end" (embed r) for a flow-map model u(x, t, r) (MeanFlow). The second
            embedding's output layer starts at zero, so a new flow-map model is a velocity model.

    `config` holds the constructor arguments, so `UNet(**model.config)` rebuilds the model.
    """

    def __init__(
        self,
        *,
        in_channels: int = 3,
        out_channels: int | None = None,
        image_size: int = 32,
        base_channels: int = 128,
        channel_mults: Sequence[int] = (1, 2, 2, 2),
        num_res_blocks: int = 2,
        attention_resolutions: Sequence[int] = (16,),
        num_heads: int = 4,
        head_channels: int | None = None,
        dropout: float = 0.1,
        num_classes: int | None = None,
        time_embedding: str = "sinusoidal",
        time_embed_dim: int | None = None,
        fourier_scale: float = 16.0,
        learnable_fourier: bool = False,
        num_groups: int = 32,
        scale_shift: bool = False,
        mid_attention: bool = True,
        second_time: str | None = None,
        time_scale: float = 1000.0,
    ) -> None:
        super().__init__()
        channel_mults = tuple(int(m) for m in channel_mults)
        attention_resolutions = tuple(int(r) for r in attention_resolutions)
        out_channels = in_channels if out_channels is None else out_channels
        self.config: dict[str, Any] = dict(
            in_channels=in_channels,
            out_channels=out_channels,
            image_size=image_size,
            base_channels=base_channels,
            channel_mults=channel_mults,
            num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions,
            num_heads=num_heads,
            head_channels=head_channels,
            dropout=dropout,
            num_classes=num_classes,
            time_embedding=time_embedding,
            time_embed_dim=time_embed_dim,
            fourier_scale=fourier_scale,
            learnable_fourier=learnable_fourier,
            num_groups=num_groups,
            scale_shift=scale_shift,
            mid_attention=mid_attention,
            second_time=second_time,
            time_scale=time_scale,
        )

        if min(in_channels, out_channels, image_size) < 1:
            raise ValueError("in_channels, out_channels and image_size must be >= 1")
        UNetOptions(time_embedding=time_embedding, time_scale=time_scale, second_time=second_time or "interval", base_channels=base_channels,
                    channel_mults=channel_mults, num_res_blocks=num_res_blocks, attention_resolutions=attention_resolutions,
                    mid_attention=mid_attention, num_heads=num_heads, head_channels=head_channels, scale_shift=scale_shift,
                    dropout=dropout).validate(image_size)
        resolutions = check_geometry(image_size, channel_mults, attention_resolutions)

        self.in_channels = in_channels
        self.out_channels = out_channels
        self.image_size = image_size
        self.num_classes = num_classes

        emb_dim = time_embed_dim or 4 * base_channels
        self.second_time = second_time
        # time (+ second time of a flow map) + class: the conditioning every backbone shares
        self.cond = Conditioning(emb_dim, feature_dim=base_channels, time_embedding=time_embedding, time_scale=time_scale,
                                 fourier_scale=fourier_scale, learnable_fourier=learnable_fourier, num_classes=num_classes,
                                 flow_map=second_time is not None, second_time=second_time or "interval")

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, dropout, num_groups, scale_shift)

        def attn(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, num_heads, head_channels, num_groups)

        # encoder
        ch = base_channels
        self.input_blocks = nn.ModuleList([EmbedSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
        skip_channels = [ch]
        for level, mult in enumerate(channel_mults):
            for _ in range(num_res_blocks):
                layers: list[nn.Module] = [res(ch, base_channels * mult)]
                ch = base_channels * mult
                if resolutions[level] in attention_resolutions:
                    layers.append(attn(ch))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_channels.append(ch)
            if level != len(channel_mults) - 1:
                self.input_blocks.append(EmbedSequential(Downsample(ch)))
                skip_channels.append(ch)

        # middle
        mid: list[nn.Module] = [res(ch, ch)]
        if mid_attention:
            mid.append(attn(ch))
        mid.append(res(ch, ch))
        self.middle_block = EmbedSequential(*mid)

        # decoder
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mults))):
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), base_channels * mult)]
                ch = base_channels * mult
                if resolutions[level] in attention_resolutions:
                    layers.append(attn(ch))
                if level != 0 and i == num_res_blocks:
                    layers.append(Upsample(ch))
                self.output_blocks.append(EmbedSequential(*layers))
        assert not skip_channels

        self.out = nn.Sequential(GroupNorm32(ch, num_groups), nn.SiLU(), _zero(nn.Conv2d(ch, out_channels, 3, padding=1)))

    #: parameter names before the shared conditioning module (checkpoints written before issue 16) -> now
    legacy_renames: typing.ClassVar[dict[str, str]] = {"time_embed.": "cond.time_embed.", "class_embed.": "cond.class_embed.",
                      "second_time_embed.": "cond.second_time_embed."}

    @property
    def null_label(self) -> int | None:
        """The label meaning "unconditional" (num_classes), None for an unconditional model."""
        return self.num_classes

    @property
    def class_embed(self) -> nn.Module | None:
        return self.cond.class_embed

    def num_parameters(self, trainable_only: bool = False) -> int:
        return count_parameters(self, trainable_only)

    def _check_input(self, x: Tensor) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(
                f"expected input of shape (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                f"got {tuple(x.shape)}; build the UNet with the data's channels and image_size"
            )

    def embed(self, t: Tensor | float, y: Tensor | None, batch_size: int, device: torch.device, r: Tensor | float | None = None) -> Tensor:
        """The (B, time_embed_dim) conditioning vector: time embedding (+ second time) + class embedding."""
        return self.cond(t, y, batch_size, device, r)

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None, r: Tensor | float | None = None) -> Tensor:
        """x: (B, C, H, W), t: scalar / (B,) / (B, 1, 1, 1) in [0, 1], y: (B,) long or None.

        r: the second time of a flow-map model (second_time set): the output is the average velocity
        over [t, r]; None means r = t, the instantaneous velocity. Returns (B, out_channels, H, W) in x's dtype.
        """
        self._check_input(x)
        emb = self.embed(t, y, x.shape[0], x.device, r)
        h = x
        skips = []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h).to(x.dtype)


@dataclass
class UNetOptions(ConditioningOptions):
    """[model.unet]: the U-Net's widths, depth and attention (see `UNet` for each key), plus the shared conditioning keys.

    head_channels: None = num_heads heads; an integer = heads of that width (ADM's num_head_channels).
    """

    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (7,)
    mid_attention: bool = True  # self-attention in the middle block (costly at 14x14 on a CPU)
    num_heads: int = 4
    head_channels: int | None = None
    scale_shift: bool = False  # FiLM (scale, shift) conditioning in the residual blocks (ADM's use_scale_shift_norm)
    dropout: float = 0.0

    def validate(self, image_size: int | None = None) -> None:
        """ValueError naming the key for a value out of range, or (given image_size) a geometry that cannot take it."""
        self.check_conditioning()
        if self.base_channels < 1 or self.num_res_blocks < 1:
            raise ValueError("base_channels and num_res_blocks must be >= 1")
        if not self.channel_mults or min(self.channel_mults) < 1:
            raise ValueError(f"channel_mults must be a non-empty list of positive integers, got {list(self.channel_mults)}")
        if self.num_heads < 1 or (self.head_channels is not None and self.head_channels < 1):
            raise ValueError("num_heads and head_channels must be >= 1")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if image_size is not None:
            check_geometry(image_size, self.channel_mults, self.attention_resolutions)


def build_unet(options: UNetOptions, built_for: BuiltFor) -> UNet:
    o = options
    return UNet(in_channels=built_for.channels, image_size=built_for.image_size, base_channels=o.base_channels,
                channel_mults=o.channel_mults, num_res_blocks=o.num_res_blocks, attention_resolutions=o.attention_resolutions,
                mid_attention=o.mid_attention, num_heads=o.num_heads, head_channels=o.head_channels, scale_shift=o.scale_shift,
                dropout=o.dropout, num_classes=built_for.num_classes, time_embedding=o.time_embedding,
                second_time=o.second_time if built_for.flow_map else None, time_scale=o.time_scale)


UNET = Backbone("unet", UNetOptions, build_unet, flow_map=True, flow_map_keys=("second_time",),
                description="U-Net of DDPM / improved DDPM (torchcfm's CIFAR-10 layout)")
