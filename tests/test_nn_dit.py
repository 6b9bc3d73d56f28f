"""The diffusion transformer of imgflow.nn.dit, on tiny models (width 32, 2 blocks, 2 heads, 2x2 patches of 1x8x8 images)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from imgflow.nn.dit import DiT, dit_flops, sincos_position_embedding

TINY = dict(in_channels=1, image_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=2)
#: DiT-S/2 on ImageNet-256 latents (4 x 32 x 32, 256 tokens, 1000 classes), without the learned-variance channels
DIT_S2 = dict(in_channels=4, out_channels=4, image_size=32, patch_size=2, hidden_size=384, depth=12, num_heads=6, num_classes=1000)


def tiny(**kw) -> DiT:
    torch.manual_seed(0)
    return DiT(**{**TINY, **kw})


@torch.no_grad()
def perturb(model: torch.nn.Module, scale: float = 0.2, seed: int = 0, skip: tuple[torch.nn.Parameter, ...] = ()) -> torch.nn.Module:
    """Add noise to every parameter (but those in skip), so the zero-initialised layers are not zero."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if not any(p is s for s in skip):
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


def batch(b: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 1, 8, 8, generator=g), torch.rand(b, generator=g)


def test_output_shape_and_dtype_for_every_time_shape():
    net = perturb(tiny(out_channels=3, num_classes=4))
    x, t = batch()
    for tt in (t, t[:, None, None, None], 0.3, torch.tensor(0.3)):
        out = net(x, tt, torch.tensor([0, 1, 4]))
        assert out.shape == (3, 3, 8, 8) and out.dtype == torch.float32 and torch.isfinite(out).all()
    assert torch.equal(net(x, 0.3), net(x, torch.full((3,), 0.3)))  # a scalar time broadcasts
    out64 = net.double()(x.double(), t.double())
    assert out64.dtype == torch.float64 and out64.shape == (3, 3, 8, 8)


def test_untrained_dit_outputs_exactly_zero():
    """adaLN-Zero: every block's modulation and the final adaLN and Linear start at zero."""
    net = tiny(num_classes=3, flow_map=True)
    x, t = batch()
    assert torch.equal(net(x, t, torch.tensor([0, 1, 2]), r=torch.ones(3)), torch.zeros_like(x))
    for block in net.blocks:  # every block is the identity at initialisation
        h = torch.randn(3, net.grid**2, 32)
        assert torch.equal(block(h, torch.randn(3, 32)), h)


def test_null_label_time_and_class_conditioning():
    net = perturb(tiny(num_classes=3))
    x, t = batch()
    assert net.null_label == 3
    out = net(x, t)
    assert torch.equal(out, net(x, t, torch.full((3,), 3)))  # y = None is the null label
    assert (out - net(x, t, torch.tensor([0, 1, 2]))).abs().amin(dim=(1, 2, 3)).gt(0).all()  # every sample sees its label
    assert not torch.allclose(net(x, t, torch.tensor([0, 0, 0])), net(x, t, torch.tensor([1, 1, 1])), atol=1e-4)
    assert (out - net(x, 1 - t)).abs().amax(dim=(1, 2, 3)).gt(1e-4).all()  # t matters for every sample


def test_flow_map_second_time_starts_inert_then_matters():
    net = tiny(flow_map=True)
    assert net.cond.flow_map
    out_layer = net.cond.second_time_embed.mlp[-1]
    # everything but the second time's (zero) output layer trained: r still changes nothing
    perturb(net, skip=tuple(out_layer.parameters()))
    x, t = batch()
    out = net(x, t)
    assert torch.equal(out, net(x, t, r=torch.ones(3))) and torch.equal(out, net(x, t, r=t))
    perturb(net, seed=1)
    out = net(x, t)
    assert torch.equal(out, net(x, t, r=t))  # r = None means r = t
    assert (out - net(x, t, r=torch.ones(3))).abs().amax(dim=(1, 2, 3)).gt(1e-4).all()


def test_second_time_and_labels_are_refused_by_a_network_that_does_not_take_them():
    x, t = batch()
    with pytest.raises(ValueError, match="not a flow map"):
        tiny()(x, t, r=t)
    with pytest.raises(ValueError, match="unconditional"):
        tiny()(x, t, torch.tensor([0, 1, 2]))


@pytest.mark.filterwarnings("ignore:.*torch.jit.script.* is deprecated:FutureWarning")  # torch's first forward-AD call
def test_forward_mode_jvp_under_the_math_kernel_matches_a_finite_difference():
    """MeanFlow's du/dt: d/de u(x + e v, t + e, r) through torch.func.jvp on the math attention kernel.

    Tolerance: a float64 model with time_scale 1 (MeanFlow's setting), t = 0.5 and e = 2^-10 exact in float32
    (the time features are computed in float32). The central difference's truncation error is
    O(e^2 |u'''|) ~ 1e-7 for O(1) derivatives and the float32 rounding of the features (~6e-8, their arguments
    are <= 1) adds ~6e-8 / (2 e) ~ 3e-5; 1e-3 of max |du| is a 30x margin that still catches a wrong or missing
    time derivative (an O(1) relative error).
    """
    net = perturb(tiny(num_classes=3, flow_map=True, time_scale=1.0)).double()
    g = torch.Generator().manual_seed(2)
    x, v = torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64), torch.randn(2, 1, 8, 8, generator=g, dtype=torch.float64)
    t, r, y = torch.full((2,), 0.5, dtype=torch.float64), torch.tensor([0.75, 1.0], dtype=torch.float64), torch.tensor([0, 3])

    def u(xx, tt, rr):
        return net(xx, tt, y, r=rr)

    with sdpa_kernel([SDPBackend.MATH]):
        out, du = torch.func.jvp(u, (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    eps = 2.0**-10
    with torch.no_grad():
        fd = (u(x + eps * v, t + eps, r) - u(x - eps * v, t - eps, r)) / (2 * eps)
        assert torch.allclose(out, u(x, t, r), rtol=0, atol=1e-12)
    assert du.abs().max() > 1e-2  # a derivative worth comparing
    assert (du - fd).abs().max() < 1e-3 * du.abs().max()


def test_position_embedding_is_the_fixed_sin_cos_and_not_in_the_state_dict():
    net = tiny()
    pe = net.pos_embed[0]
    assert pe.shape == (16, 32) and torch.equal(pe, sincos_position_embedding(32, 4))
    assert not pe.requires_grad and "pos_embed" not in net.state_dict()
    # token n = 4 i + j (row i, column j); quarter q = 8, w_k = 10000^(-k / 8); half the features per axis
    q = 8
    for i, j, k in [(1, 2, 0), (3, 1, 5), (2, 3, 7)]:
        w = 10000.0 ** (-k / q)
        row, col = pe[4 * i + j, : 2 * q], pe[4 * i + j, 2 * q:]
        assert row[k].item() == pytest.approx(math.sin(i * w), abs=1e-6) and row[q + k].item() == pytest.approx(math.cos(i * w), abs=1e-6)
        assert col[k].item() == pytest.approx(math.sin(j * w), abs=1e-6) and col[q + k].item() == pytest.approx(math.cos(j * w), abs=1e-6)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_position_embedding(30, 4)


def test_unpatchify_puts_each_token_s_values_on_its_own_patch():
    """The output equals DiT's reference unpatchify (einsum "nhwpqc->nchpwq") of the final Linear's tokens."""
    net = perturb(tiny(out_channels=3))
    seen = {}
    net.final.register_forward_hook(lambda module, args, out: seen.setdefault("tokens", out))
    x, t = batch(2)
    out = net(x, t)
    tokens = seen["tokens"]  # (B, 16, 2 * 2 * 3)
    reference = torch.einsum("nhwpqc->nchpwq", tokens.reshape(2, 4, 4, 2, 2, 3)).reshape(2, 3, 8, 8)
    assert torch.equal(out, reference)


def test_config_rebuilds_the_same_network():
    net = tiny(num_classes=5, flow_map=True, second_time="end", time_scale=10.0, mlp_ratio=2.0)
    again = DiT(**net.config)
    assert again.config == net.config and net.config["out_channels"] == 1
    a, b = net.state_dict(), again.state_dict()
    assert list(a) == list(b) and all(a[k].shape == b[k].shape for k in a)
    perturb(net)
    again.load_state_dict(net.state_dict())
    x, t = batch()
    assert torch.equal(net(x, t, r=t + 0.1), again(x, t, r=t + 0.1))
    assert DiT.legacy_renames == {} and net.num_parameters() == sum(p.numel() for p in net.parameters())


def test_wrong_input_shape_names_the_expected_one():
    net = tiny()
    for bad in (torch.randn(2, 1, 6, 6), torch.randn(2, 3, 8, 8), torch.randn(1, 8, 8)):
        with pytest.raises(ValueError, match=r"expected input of shape \(B, 1, 8, 8\), got .*; build the DiT with the data's"):
            net(bad, 0.5)


@pytest.mark.parametrize("kwargs, message", [
    (dict(image_size=10, patch_size=4), "image_size 10 is not divisible by patch_size 4; use a patch size that divides it"),
    (dict(hidden_size=30, num_heads=4), r"hidden_size 30 must be divisible by num_heads \(4\) and by 4"),
    (dict(hidden_size=34, num_heads=2), r"hidden_size 34 must be divisible by num_heads \(2\) and by 4"),
    (dict(depth=0), "must be positive"),
    (dict(mlp_ratio=0.0), "must be positive"),
])
def test_bad_geometry_is_refused_with_a_one_line_fix(kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        DiT(**{**TINY, **kwargs})
    assert "\n" not in str(info.value)


def test_gradient_reaches_the_class_embedding_and_the_patch_embedding():
    net = perturb(tiny(num_classes=4))
    x, t = batch()
    net(x, t, torch.tensor([0, 2, 2])).square().mean().backward()
    rows = net.cond.class_embed.embedding.weight.grad.abs().sum(dim=1)
    assert rows[0] > 0 and rows[2] > 0 and rows[1] == 0 and rows[3] == 0 and rows[4] == 0  # only the labels used
    assert net.patch_embed.weight.grad.abs().min() > 0 and net.cond.time_embed.mlp[0].weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in net.parameters())


def test_dit_s2_parameter_count_and_flops_match_the_paper():
    """DiT-S/2, ImageNet 256 (latents 4 x 32 x 32, 256 tokens, 1000 classes); built on the meta device (no memory, no init cost).

    Parameters: exactly 32,858,896, the paper's "33 M" (Table 4). DiT's own code has 6,160 more (its final Linear
    also outputs the 4 learned-variance channels); the conditioning (256 sinusoids -> 384 -> 384, a 1001-row class
    table) has DiT's widths. FLOPs: the paper's "6.06 Gflops" count one multiply-add as one FLOP, the convention of
    dit_flops: 6,053,855,232 here (the time and class embeddings and all elementwise work are not counted).
    """
    with torch.device("meta"):
        net = DiT(**{k: v for k, v in DIT_S2.items() if k != "out_channels"})
    assert net.num_parameters() == 32_858_896 and abs(net.num_parameters() / 33e6 - 1) < 0.01
    flops = net.flops_per_image()
    assert flops == dit_flops(**{k: v for k, v in DIT_S2.items() if k not in ("num_heads", "num_classes")})
    assert abs(flops / 6.06e9 - 1) < 0.05 and flops == 6_053_855_232
    # the formula term by term: N = 256 tokens, d = 384, 12 blocks of 12 N d^2 + 2 N^2 d + 6 d^2; patches in, Linear out
    n, d = 256, 384
    assert flops == 12 * (12 * n * d * d + 2 * n * n * d + 6 * d * d) + n * 16 * d + 2 * d * d + n * d * 16
    # the tiny model's count is the same formula (a check of the small-size arithmetic, not just of DiT-S)
    n, d = 16, 32
    assert tiny().flops_per_image() == 2 * (12 * n * d * d + 2 * n * n * d + 6 * d * d) + n * 4 * d + 2 * d * d + n * d * 4
