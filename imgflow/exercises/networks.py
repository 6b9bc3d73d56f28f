"""The image labs' network graders: the course U-Net's residual layer, patchify, and one adaLN-Zero DiT block.

Each runs the student's function on the submodules of one of imgflow's own modules (fixed seeded weights, eval
mode) and compares it with that module's forward:

- the residual layer of the course lab's U-Net (`imgflow.nn.lab_unet.LabResidualLayer`, the layer `LabUNet` is
  built of), its BatchNorms given non-trivial running statistics so that every sub-block shows;
- patchify (B, C, H, W) -> (B, N, C p p), the tokens whose linear map is `imgflow.nn.dit.DiT`'s strided-convolution
  patch embedding (features ordered (c, p, q) like the convolution's flattened kernel; tokens row by row);
- `imgflow.nn.dit.DiTBlock.forward`, with a freshly built block whose modulation is not zero (inside a `DiT` it
  starts at zero, which makes every block the identity: then a missing gate would not show).
"""

from __future__ import annotations

from collections.abc import Callable

import einops
import torch
from torch import Tensor, nn

from imgflow.core.grading import Case, CheckResult, grade, seeded_module
from imgflow.nn.dit import DiTBlock
from imgflow.nn.lab_unet import LabResidualLayer

__all__ = ["check_dit_block", "check_patchify", "check_residual_layer"]

#: convolutions and linears of O(1) activations in float32, summed in another order than the library's: ~1e-6
LAYER_ATOL, LAYER_RTOL = 1e-4, 1e-4
#: patchify only moves numbers: exact
PATCH_ATOL, PATCH_RTOL = 0.0, 0.0
#: attention and an MLP of width 4 d in float32: rounding ~1e-6 of outputs of size ~1
BLOCK_ATOL, BLOCK_RTOL = 1e-4, 1e-4


def _seeded(build: Callable[[], nn.Module], seed: int) -> nn.Module:
    return seeded_module(build, seed)


def _residual_layer(seed: int, channels: int, embed_dim: int) -> LabResidualLayer:
    layer = _seeded(lambda: LabResidualLayer(channels, embed_dim, embed_dim), seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for bn in (layer.block1[1], layer.block2[1]):   # a trained network's statistics, not the fresh 0 / 1
            bn.running_mean.copy_(torch.randn(channels, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(channels, generator=g) + 0.5)
            bn.weight.copy_(torch.rand(channels, generator=g) + 0.5)
            bn.bias.copy_(torch.randn(channels, generator=g) * 0.2)
    return layer


def check_residual_layer(residual_layer: Callable[..., Tensor]) -> CheckResult:
    """residual_layer(layer, x (B, C, H, W), t_embed (B, d), y_embed (B, d)) -> (B, C, H, W):
    h = block1(x) + time_adapter(t_embed) + y_adapter(y_embed) (each (B, C) broadcast over H, W); x + block2(h).

    `layer` is an `imgflow.nn.lab_unet.LabResidualLayer` (eval mode); the reference is its forward."""
    cases = []
    for seed, (channels, dim, size) in ((0, (8, 12, 6)), (1, (4, 8, 5))):
        layer = _residual_layer(seed, channels, dim)
        g = torch.Generator().manual_seed(seed + 10)
        x = torch.randn(3, channels, size, size, generator=g)
        t_embed, y_embed = torch.randn(3, dim, generator=g), torch.randn(3, dim, generator=g)
        with torch.no_grad():
            ta = layer.time_adapter(t_embed)[:, :, None, None]
            ya = layer.y_adapter(y_embed)[:, :, None, None]
            h = layer.block1(x)
            mistakes = {
                "no skip connection (block2(h) without x)": layer.block2(h + ta + ya),
                "the embeddings added after block2, outside the residual branch": x + layer.block2(h) + ta + ya,
                "the label embedding left out": x + layer.block2(h + ta),
                "the time embedding left out": x + layer.block2(h + ya),
                "block1 skipped (the embeddings added to x itself)": x + layer.block2(x + ta + ya),
                "the two adapters swapped (time_adapter on y_embed, y_adapter on t_embed)":
                    x + layer.block2(h + layer.time_adapter(y_embed)[:, :, None, None] + layer.y_adapter(t_embed)[:, :, None, None]),
            }
            expected = layer(x, t_embed, y_embed)
        cases.append(Case((layer, x, t_embed, y_embed), expected, mistakes=mistakes, start=x))
    return grade("U-Net residual layer", _no_grad(residual_layer), cases, atol=LAYER_ATOL, rtol=LAYER_RTOL)


def _no_grad(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    def run(*args):
        with torch.no_grad():
            return fn(*args)

    return run


def patchify_reference(x: Tensor, p: int) -> Tensor:
    """(B, C, H, W) -> (B, (H / p) (W / p), C p p): token n = row n // (W / p), column n % (W / p) of the patch grid,
    its features ordered (c, i, j) like a Conv2d(C, d, p, stride=p)'s weight (d, C, p, p) flattened."""
    return einops.rearrange(x, "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=p)


def check_patchify(patchify: Callable[[Tensor, int], Tensor]) -> CheckResult:
    """patchify(x (B, C, H, W), p) -> (B, N, C p p), N = (H / p) (W / p): the DiT's patch embedding is a linear map of
    these tokens. Checked on the 4 x 7 x 7 latents configs/mnist_latent_dit.toml trains (p = 1) and on 4 x 8 x 8 (p = 2)."""
    cases = []
    for seed, (shape, p) in ((0, ((2, 4, 7, 7), 1)), (1, ((2, 4, 8, 8), 2)), (2, ((1, 3, 6, 6), 3))):
        x = torch.randn(*shape, generator=torch.Generator().manual_seed(seed))
        mistakes = {
            "the features ordered (p, q, c), channels last within a patch (not the convolution's (c, p, q))":
                einops.rearrange(x, "b c (h p) (w q) -> b (h w) (p q c)", p=p, q=p),
            "the tokens column by column (h and w swapped in the token order)":
                einops.rearrange(x, "b c (h p) (w q) -> b (w h) (c p q)", p=p, q=p),
            "the rows and columns inside a patch swapped ((c, q, p))":
                einops.rearrange(x, "b c (h p) (w q) -> b (h w) (c q p)", p=p, q=p),
        }
        cases.append(Case((x, p), patchify_reference(x, p), mistakes=mistakes))
    return grade("patchify", patchify, cases, atol=PATCH_ATOL, rtol=PATCH_RTOL)


def _dit_block(seed: int, hidden: int, heads: int) -> DiTBlock:
    block = _seeded(lambda: DiTBlock(hidden, heads, 4.0), seed)
    with torch.no_grad():   # a modulation large enough that every shift, scale and gate moves the output
        block.modulation[-1].weight.mul_(4.0)
        block.modulation[-1].bias.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(seed + 1))
    return block


def check_dit_block(dit_block: Callable[..., Tensor]) -> CheckResult:
    """dit_block(block, x (B, N, d), c (B, d)) -> (B, N, d): with (shift_a, scale_a, gate_a, shift_m, scale_m, gate_m)
    = block.modulation(c).chunk(6, dim=1) and modulate(h, shift, scale) = h (1 + scale) + shift (per sample, over the
    tokens), x = x + gate_a attention(modulate(norm1(x), shift_a, scale_a)), then
    x + gate_m mlp(modulate(norm2(x), shift_m, scale_m)).

    `block` is an `imgflow.nn.dit.DiTBlock` (block.attention, block.mlp, block.norm1/2, block.modulation); the
    reference is its forward."""
    cases = []
    for seed, (hidden, heads, tokens) in ((0, (16, 2, 9)), (1, (24, 4, 4))):
        block = _dit_block(seed, hidden, heads)
        g = torch.Generator().manual_seed(seed + 10)
        x, c = torch.randn(2, tokens, hidden, generator=g), torch.randn(2, hidden, generator=g)
        with torch.no_grad():
            sa, ca, ga, sm, cm, gm = (m[:, None] for m in block.modulation(c).chunk(6, dim=1))

            def variant(mod=lambda h, s, k: h * (1 + k) + s, gates=True, residual=True, order=(0, 1, 2, 3, 4, 5)):
                parts = [sa, ca, ga, sm, cm, gm]
                s_a, k_a, g_a, s_m, k_m, g_m = (parts[i] for i in order)
                a = block.attention(mod(block.norm1(x), s_a, k_a)) * (g_a if gates else 1)
                h = x + a if residual else a
                m = block.mlp(mod(block.norm2(h), s_m, k_m)) * (g_m if gates else 1)
                return h + m if residual else m

            mistakes = {
                "no gates (gate_a, gate_m left out)": variant(gates=False),
                "modulate as h * scale + shift instead of h * (1 + scale) + shift": variant(mod=lambda h, s, k: h * k + s),
                "shift and scale swapped": variant(order=(1, 0, 2, 4, 3, 5)),
                "no residual connections": variant(residual=False),
            }
            expected = block(x, c)
        cases.append(Case((block, x, c), expected, mistakes=mistakes, start=x))
    return grade("adaLN-Zero DiT block", _no_grad(dit_block), cases, atol=BLOCK_ATOL, rtol=BLOCK_RTOL)
