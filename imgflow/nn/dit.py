"""A diffusion transformer (Peebles & Xie 2023, "Scalable Diffusion Models with Transformers"): `DiT`.

Shapes for x (B, C, H, W) with patch size p and hidden width d, N = (H / p) (W / p) tokens:

- patchify: Conv2d(C, d, kernel = stride = p) -> (B, N, d), plus a fixed 2-D sin-cos position
  embedding (a buffer recomputed at construction, not stored in checkpoints);
- conditioning c (B, d) = time(t) [+ second time(r)] [+ class(y)] from the shared
  `imgflow.nn.conditioning.Conditioning` (sinusoids -> MLP; a learned null class for guidance);
- `depth` adaLN-Zero blocks: (shift, scale, gate) x 2 = Linear(SiLU(c)) -> 6d, and
  h = h + gate_a * Attn(LN(h) (1 + scale_a) + shift_a);  h = h + gate_m * MLP(LN(h) (1 + scale_m) + shift_m),
  LayerNorm without affine (eps 1e-6), attention through scaled_dot_product_attention (the math
  kernel under MeanFlow's JVP), MLP d -> mlp_ratio d -> d with tanh-GELU;
- final layer: adaLN (shift, scale), Linear(d, p^2 C_out), unpatchify -> (B, C_out, H, W).

Initialisation as the paper's: xavier-uniform linears (the patch embedding on its flattened
kernel), every adaLN modulation and the final linear zero, so an untrained DiT outputs exactly 0
and every block starts as the identity.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from imgflow.nn.backbones import Backbone, BuiltFor
from imgflow.nn.conditioning import Conditioning, ConditioningOptions
from imgflow.nn.unet import count_parameters

__all__ = ["DIT", "DiT", "DiTOptions", "dit_flops", "sincos_position_embedding"]


def sincos_position_embedding(dim: int, grid: int) -> Tensor:
    """(grid * grid, dim) fixed 2-D sin-cos embedding: half the features encode the row, half the column.

    Each half is [sin(pos w_k) | cos(pos w_k)] with w_k = 10000^(-k / (dim / 4)), k = 0 .. dim / 4 - 1.
    """
    if dim % 4:
        raise ValueError(f"the 2-D sin-cos position embedding needs a width divisible by 4, got {dim}")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4))
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")

    def encode(p: Tensor) -> Tensor:
        angles = p.reshape(-1, 1) * omega[None]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    """One adaLN-Zero transformer block: (B, N, d), c (B, d) -> (B, N, d)."""

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        width = int(hidden * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(hidden, width), nn.GELU(approximate="tanh"), nn.Linear(width, hidden))
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 6 * hidden))

    def attention(self, x: Tensor) -> Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three heads d) -> three b heads n d", three=3, heads=self.num_heads).contiguous()
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(rearrange(out, "b heads n d -> b n (heads d)"))

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = self.modulation(c).chunk(6, dim=1)
        x = x + gate_a[:, None] * self.attention(_modulate(self.norm1(x), shift_a, scale_a))
        return x + gate_m[:, None] * self.mlp(_modulate(self.norm2(x), shift_m, scale_m))


class DiT(nn.Module):
    """Diffusion transformer: model(x, t, y=None, r=None) -> tensor shaped like x (see the module docstring).

    Args (keyword only): in_channels, out_channels (default in_channels), image_size (H = W, divisible by
    patch_size), patch_size, hidden_size (divisible by num_heads and by 4), depth, num_heads, mlp_ratio,
    num_classes (None: unconditional; else labels 0..num_classes-1 and the null label num_classes),
    flow_map (take a second time r), time_embedding / time_scale / second_time (the shared conditioning).
    `config` holds the arguments, so `DiT(**model.config)` rebuilds the model.
    """

    legacy_renames: typing.ClassVar[dict[str, str]] = {}

    def __init__(self, *, in_channels: int = 3, out_channels: int | None = None, image_size: int = 32, patch_size: int = 2,
                 hidden_size: int = 384, depth: int = 12, num_heads: int = 6, mlp_ratio: float = 4.0, num_classes: int | None = None,
                 flow_map: bool = False, time_embedding: str = "sinusoidal", time_scale: float = 1000.0,
                 second_time: str = "interval") -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.config: dict[str, Any] = dict(in_channels=in_channels, out_channels=out_channels, image_size=image_size,
                                           patch_size=patch_size, hidden_size=hidden_size, depth=depth, num_heads=num_heads,
                                           mlp_ratio=mlp_ratio, num_classes=num_classes, flow_map=flow_map,
                                           time_embedding=time_embedding, time_scale=time_scale, second_time=second_time)
        if min(in_channels, out_channels, image_size) < 1:
            raise ValueError("in/out channels and image_size must be positive")
        DiTOptions(time_embedding=time_embedding, time_scale=time_scale, second_time=second_time, patch_size=patch_size,
                   hidden_size=hidden_size, depth=depth, num_heads=num_heads, mlp_ratio=mlp_ratio).validate(image_size)
        self.in_channels, self.out_channels, self.image_size, self.patch_size = in_channels, out_channels, image_size, patch_size
        self.num_classes = num_classes
        self.grid = image_size // patch_size
        self.patch_embed = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_position_embedding(hidden_size, self.grid)[None], persistent=False)
        self.cond = Conditioning(hidden_size, feature_dim=min(256, hidden_size), time_embedding=time_embedding, time_scale=time_scale,
                                 num_classes=num_classes, flow_map=flow_map, second_time=second_time)
        self.blocks = nn.ModuleList([DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth)])
        self.final_norm = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=1e-6)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 2 * hidden_size))
        self.final = nn.Linear(hidden_size, patch_size * patch_size * out_channels)
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Linear) and not any(module is m for m in self.cond.modules()):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.xavier_uniform_(self.patch_embed.weight.view(self.patch_embed.weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.bias)
        for block in self.blocks:
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        for layer in (self.final_modulation[-1], self.final):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    @property
    def null_label(self) -> int | None:
        return self.num_classes

    def num_parameters(self, trainable_only: bool = False) -> int:
        return count_parameters(self, trainable_only)

    def flops_per_image(self) -> int:
        return dit_flops(**{k: self.config[k] for k in ("in_channels", "out_channels", "image_size", "patch_size", "hidden_size",
                                                         "depth", "mlp_ratio")})

    def forward(self, x: Tensor, t: Tensor | float, y: Tensor | None = None, r: Tensor | float | None = None) -> Tensor:
        """x: (B, C, H, W); t: scalar / (B,) / (B, 1, 1, 1) in [0, 1]; y: (B,) labels or None; r: a flow map's second time."""
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"expected input of shape (B, {self.in_channels}, {self.image_size}, {self.image_size}), got "
                             f"{tuple(x.shape)}; build the DiT with the data's channels and image_size")
        c = self.cond(t, y, x.shape[0], x.device, r).to(x.dtype)
        h = rearrange(self.patch_embed(x), "b d gh gw -> b (gh gw) d") + self.pos_embed.to(x.dtype)
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.final_modulation(c).chunk(2, dim=1)
        h = self.final(_modulate(self.final_norm(h), shift, scale))
        p = self.patch_size
        return rearrange(h, "b (gh gw) (p q c) -> b c (gh p) (gw q)", gh=self.grid, p=p, q=p).to(x.dtype)


def dit_flops(*, in_channels: int, out_channels: int, image_size: int, patch_size: int, hidden_size: int, depth: int,
              mlp_ratio: float = 4.0) -> int:
    """Forward FLOPs of one image, counted as multiply-adds (1 FLOP = 1 MAC, the DiT paper's convention: its DiT-S/2
    at 256 px, 32 x 32 x 4 latents, is 6.06 GFLOPs).

    N = (H / p)^2 tokens, d = hidden: patch embedding N p^2 C d; per block the qkv and output projections 4 N d^2,
    the attention scores and weighted sum 2 N^2 d, the MLP 2 mlp_ratio N d^2, the adaLN modulation 6 d^2; the
    final layer 2 d^2 + N d p^2 C_out. The time/class embedding MLPs (a few d^2) are left out.
    """
    n, d = (image_size // patch_size) ** 2, hidden_size
    block = 4 * n * d * d + 2 * n * n * d + 2 * mlp_ratio * n * d * d + 6 * d * d
    return int(n * patch_size**2 * in_channels * d + depth * block + 2 * d * d + n * d * patch_size**2 * out_channels)


@dataclass
class DiTOptions(ConditioningOptions):
    """[model.dit]: patch size, width, depth, heads and MLP ratio (DiT-S: 384 wide, 12 deep, 6 heads; DiT-B: 768, 12, 12),
    plus the shared conditioning keys (time_embedding, time_scale, second_time)."""

    patch_size: int = 2
    hidden_size: int = 384
    depth: int = 12
    num_heads: int = 6
    mlp_ratio: float = 4.0

    def validate(self, image_size: int | None = None) -> None:
        """ValueError naming the key for a value out of range, or (given image_size) a patch size that does not divide it."""
        self.check_conditioning()
        if min(self.patch_size, self.hidden_size, self.depth, self.num_heads) < 1 or self.mlp_ratio <= 0:
            raise ValueError("patch_size, hidden_size, depth, num_heads and mlp_ratio must be positive")
        if self.hidden_size % self.num_heads or self.hidden_size % 4:
            raise ValueError(f"hidden_size {self.hidden_size} must be divisible by num_heads ({self.num_heads}) and by 4 "
                             "(the 2-D position embedding)")
        if image_size is not None and image_size % self.patch_size:
            fits = max(p for p in range(1, self.patch_size + 1) if image_size % p == 0)
            raise ValueError(f"image_size {image_size} is not divisible by patch_size {self.patch_size}; use a patch size that divides it "
                             f"(e.g. {fits}) or pad the images")


def build_dit(options: DiTOptions, built_for: BuiltFor) -> DiT:
    o = options
    return DiT(in_channels=built_for.channels, image_size=built_for.image_size, patch_size=o.patch_size, hidden_size=o.hidden_size,
               depth=o.depth, num_heads=o.num_heads, mlp_ratio=o.mlp_ratio, num_classes=built_for.num_classes,
               flow_map=built_for.flow_map, time_embedding=o.time_embedding, time_scale=o.time_scale, second_time=o.second_time)


DIT = Backbone("dit", DiTOptions, build_dit, flow_map=True, flow_map_keys=("second_time",),
               description="diffusion transformer (Peebles & Xie): patches, adaLN-Zero blocks, zero-initialised output")
