"""The image labs' graders (the U-Net's residual layer, patchify, the adaLN-Zero DiT block, the VAE's sample and KL) pass a
correct answer and fail the typical wrong ones, naming the mistake where they know it; their references are imgflow's
own modules."""

from __future__ import annotations

import einops
import pytest
import torch

from imgflow.core.vae import gaussian_kl
from imgflow.exercises import (
    check_dit_block,
    check_gaussian_kl,
    check_patchify,
    check_reparameterise,
    check_residual_layer,
)
from imgflow.exercises.networks import patchify_reference
from imgflow.nn.autoencoder import AutoencoderOptions, KLAutoencoder
from imgflow.nn.dit import DiT
from tests.grader_helpers import assert_grades


def residual(layer, x, te, ye, *, skip=True, time=True, label=True, first=True, scale=1.0):
    h = layer.block1(x) if first else x
    if time:
        h = h + layer.time_adapter(te)[:, :, None, None]
    if label:
        h = h + layer.y_adapter(ye)[:, :, None, None]
    return (x if skip else 0) + scale * layer.block2(h)


def patchify(x, p, pattern="b c (h p) (w q) -> b (h w) (c p q)"):
    return einops.rearrange(x, pattern, p=p, q=p)


def dit_block(block, x, c, *, gates=True, one_plus=True, gate_sign=1.0, mlp_scale=1.0, order=(0, 1, 2, 3, 4, 5)):
    parts = [m[:, None] for m in block.modulation(c).chunk(6, dim=1)]
    shift_a, scale_a, gate_a, shift_m, scale_m, gate_m = (parts[i] for i in order)
    mod = (lambda h, s, k: h * (1 + k) + s) if one_plus else (lambda h, s, k: h * k + s)
    x = x + (gate_sign * gate_a if gates else 1) * block.attention(mod(block.norm1(x), shift_a, scale_a))
    return x + mlp_scale * (gate_sign * gate_m if gates else 1) * block.mlp(mod(block.norm2(x), shift_m, scale_m))


def kl(mean, logvar, *, half=0.5, logvar_sign=-1.0, reduce="sum"):
    per = mean**2 + logvar.exp() - 1 + logvar_sign * logvar
    return half * (per.flatten(1).sum(1) if reduce == "sum" else per.flatten(1).mean(1))


# (grader, correct answer, {wrong answer: words the verdict must contain})
CASES = {
    "residual_layer": (check_residual_layer, residual, {
        lambda *a: residual(*a, skip=False): "no skip connection",
        lambda layer, x, te, ye: x + layer.block2(layer.block1(x)) + layer.time_adapter(te)[:, :, None, None]
            + layer.y_adapter(ye)[:, :, None, None]: "outside the residual branch",
        lambda *a: residual(*a, label=False): "label embedding left out",
        lambda *a: residual(*a, time=False): "time embedding left out",
        lambda *a: residual(*a, first=False): "block1 skipped",
        lambda layer, x, te, ye: residual(layer, x, ye, te): "adapters swapped",
        lambda *a: 2 * a[1] - residual(*a): "wrong sign",            # x - block2(h): the update negated
        lambda *a: residual(*a, scale=0.5): "times 0.5",              # the residual branch halved
        lambda layer, x, te, ye: residual(layer, x, te, ye).transpose(2, 3): "differs by",
    }),
    "patchify": (check_patchify, patchify, {
        lambda x, p: patchify(x, p, "b c (h p) (w q) -> b (h w) (p q c)"): "channels last within a patch",
        lambda x, p: patchify(x, p, "b c (h p) (w q) -> b (w h) (c p q)"): "column by column",
        lambda x, p: patchify(x, p, "b c (h p) (w q) -> b (h w) (c q p)"): "inside a patch swapped",
        lambda x, p: -patchify(x, p): "wrong sign",
        lambda x, p: patchify(x, p) / p**2: "times 0.25",             # p = 1 passes; p = 2 shows the factor 1/4
        lambda x, p: patchify(x, p, "b c (h p) (w q) -> b (h w) (c p q)").transpose(1, 2): "shape",
        lambda x, p: einops.rearrange(x, "b c (p h) (q w) -> b (h w) (c p q)", p=p, q=p): "differs by",  # interleaved patches
    }),
    "dit_block": (check_dit_block, dit_block, {
        lambda *a: dit_block(*a, gates=False): "no gates",
        lambda *a: dit_block(*a, one_plus=False): "h * scale + shift",
        lambda *a: dit_block(*a, order=(1, 0, 2, 4, 3, 5)): "shift and scale swapped",
        lambda block, x, c: block.attention(block.norm1(x)) + block.mlp(block.norm2(x)): "differs by",
        lambda *a: dit_block(*a, gate_sign=-1.0): "differs by",       # the gated branches subtracted
        lambda *a: dit_block(*a, mlp_scale=0.5): "differs by",        # the MLP branch halved
        lambda *a: 2 * a[1] - dit_block(*a): "wrong sign",            # the whole update negated
        lambda *a: a[1] + 0.5 * (dit_block(*a) - a[1]): "times 0.5",
    }),
    "reparameterise": (check_reparameterise, lambda m, lv, e: m + torch.exp(0.5 * lv) * e, {
        lambda m, lv, e: m + lv.exp() * e: "exp(logvar) (the variance)",
        lambda m, lv, e: m + e: "without its scale",
        lambda m, lv, e: m + lv * e: "logvar used as the standard deviation",
        lambda m, lv, e: m + torch.exp(-0.5 * lv) * e: "one over the standard deviation",
        lambda m, lv, e: m: "the mean alone",
        lambda m, lv, e: m - torch.exp(0.5 * lv) * e: "wrong sign",
        lambda m, lv, e: m + 0.5 * torch.exp(0.5 * lv) * e: "times 0.5",
    }),
    "gaussian_kl": (check_gaussian_kl, kl, {
        lambda m, lv: kl(m, lv, half=1.0): "the 1/2 is missing",
        lambda m, lv: kl(m, lv, logvar_sign=1.0): "logvar with the wrong sign",
        lambda m, lv: 0.5 * (m**2 + (-lv).exp() - 1 - lv).flatten(1).sum(1): "exp(-logvar)",
        lambda m, lv: kl(m, lv, reduce="mean"): "mean over the latent numbers",
        lambda m, lv: kl(m, lv) + 0.5 * m[0].numel(): "the - 1 left out",
        lambda m, lv: -kl(m, lv): "wrong sign",
        lambda m, lv: kl(m, lv, half=0.25): "times 0.5",
        lambda m, lv: 0.5 * (m**2 + lv.exp() - 1 - lv).sum(): "shape",   # summed over the batch too
    }),
}


@pytest.mark.parametrize("name", CASES)
def test_grader_passes_the_answer_fails_wrong_ones_and_waits_for_a_stub(name):
    assert_grades(*CASES[name])


def test_patchify_then_a_linear_map_is_the_dits_strided_convolution():
    """The reference's feature order is the one that makes patchify + Linear(conv weight flattened) = DiT.patch_embed."""
    for channels, size, p in ((4, 7, 1), (4, 8, 2), (3, 6, 3)):
        torch.manual_seed(p)
        dit = DiT(in_channels=channels, image_size=size, patch_size=p, hidden_size=16, depth=1, num_heads=2)
        x = torch.randn(2, channels, size, size)
        conv = einops.rearrange(dit.patch_embed(x), "b d h w -> b (h w) d")
        weight = dit.patch_embed.weight.reshape(16, -1)
        assert torch.allclose(patchify_reference(x, p) @ weight.T + dit.patch_embed.bias, conv, atol=1e-5)


def test_the_reparameterised_sample_is_the_autoencoders_own_draw():
    """KLAutoencoder.forward draws z = mean + exp(logvar / 2) eps with eps = randn_like(mean): the grader's reference."""
    from imgflow.exercises.vae import reparameterise_reference

    torch.manual_seed(0)
    ae = KLAutoencoder(1, 28, AutoencoderOptions(base_channels=8, channel_mults=(1, 2, 4), num_res_blocks=1)).eval()
    ae.decode = lambda z: z                      # forward then returns the drawn z itself
    x = torch.rand(2, 1, 28, 28) * 2 - 1
    torch.manual_seed(5)
    z, mean, logvar = ae(x)
    torch.manual_seed(5)
    eps = torch.randn_like(mean)
    assert torch.allclose(z, reparameterise_reference(mean, logvar, eps), atol=1e-6)
    assert torch.allclose(kl(mean, logvar), gaussian_kl(mean, logvar), rtol=1e-5)


def test_a_dit_block_at_initialisation_is_the_identity():
    """The lab's claim: DiT zero-initialises every block's modulation, so all gates are 0 and each block returns x."""
    torch.manual_seed(0)
    dit = DiT(in_channels=4, image_size=7, patch_size=1, hidden_size=32, depth=2, num_heads=2, num_classes=10)
    x, c = torch.randn(2, 49, 32), torch.randn(2, 32)
    for block in dit.blocks:
        assert torch.equal(block(x, c), x) and torch.equal(dit_block(block, x, c), x)
