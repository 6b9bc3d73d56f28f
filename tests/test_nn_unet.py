"""The time- and class-conditioned UNet of imgflow.nn (small widths so that CPU runs are fast)."""

from __future__ import annotations

import pytest
import torch

from imgflow.core import ClassifierFreeGuidance, LinearPath, flow_matching_loss
from imgflow.nn.unet import AttentionBlock, GroupNorm32, UNet, count_parameters, norm_groups


def small_unet(in_channels=1, image_size=28, channel_mults=(1, 2, 2), attention=(7,), **kw):
    kw.setdefault("base_channels", 8)
    kw.setdefault("num_res_blocks", 1)
    kw.setdefault("dropout", 0.0)
    return UNet(
        in_channels=in_channels,
        image_size=image_size,
        channel_mults=channel_mults,
        attention_resolutions=attention,
        **kw,
    )


@torch.no_grad()
def perturb(model, scale=0.05, seed=0):
    """Add noise to every parameter, so the zero-initialised output layers are not zero."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        p.add_(scale * torch.randn(p.shape, generator=g))
    return model


CASES = [
    # (in_channels, image_size, channel_mults, attention_resolutions)
    (1, 28, (1, 2, 2), (7,)),
    (3, 32, (1, 2, 2, 2), (16,)),
]


@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
@pytest.mark.parametrize("c,size,mults,attn", CASES)
@pytest.mark.parametrize("num_classes", [None, 10])
def test_output_shape(kind, c, size, mults, attn, num_classes):
    torch.manual_seed(0)
    model = perturb(small_unet(c, size, mults, attn, time_embedding=kind, num_classes=num_classes))
    x = torch.randn(3, c, size, size)
    y = torch.tensor([0, 5, 9]) if num_classes else None
    out = model(x, torch.rand(3), y)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert torch.isfinite(out).all()
    assert out.abs().sum() > 0


def test_out_channels_can_differ_from_in_channels():
    model = perturb(small_unet(out_channels=2))
    assert model(torch.randn(2, 1, 28, 28), 0.5).shape == (2, 2, 28, 28)


def test_untrained_output_is_exactly_zero():
    model = small_unet(num_classes=10)
    out = model(torch.randn(2, 1, 28, 28), torch.rand(2), torch.tensor([1, 2]))
    assert torch.equal(out, torch.zeros_like(out))


@pytest.mark.parametrize("kind,scale_shift", [("sinusoidal", False), ("fourier", False), ("sinusoidal", True)])
def test_time_and_class_change_the_output(kind, scale_shift):
    # width 8 with the default num_groups=32: the small-width case where naive clamping
    # (8 groups of one channel) erased the conditioning
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10, time_embedding=kind, scale_shift=scale_shift)).eval()
    x = torch.randn(1, 1, 28, 28).expand(3, -1, -1, -1)
    out = model(x, torch.full((3,), 0.4), torch.tensor([0, 1, 10]))
    assert (out[0] - out[1]).abs().max() > 1e-4
    assert (out[0] - out[2]).abs().max() > 1e-4
    out_t = model(x, torch.tensor([0.1, 0.4, 0.9]), torch.tensor([0, 0, 0]))
    assert (out_t[0] - out_t[1]).abs().max() > 1e-4
    assert (out_t[1] - out_t[2]).abs().max() > 1e-4


def test_y_none_means_the_null_label():
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10)).eval()
    assert model.null_label == 10
    x, t = torch.randn(4, 1, 28, 28), torch.rand(4)
    null = model(x, t, torch.full((4,), 10))
    assert torch.equal(model(x, t), null)
    assert torch.equal(model(x, t, None), null)
    assert not torch.allclose(model(x, t, torch.zeros(4, dtype=torch.long)), null)


def test_unconditional_model_rejects_labels():
    model = small_unet()
    assert model.null_label is None and model.class_embed is None
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(2, 1, 28, 28), 0.5, torch.tensor([1, 2]))


def test_scalar_time_equals_broadcast_time():
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10)).eval()
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3])
    ref = model(x, torch.full((3,), 0.3), y)
    assert torch.equal(model(x, 0.3, y), ref)
    assert torch.equal(model(x, torch.tensor(0.3), y), ref)
    assert torch.equal(model(x, torch.full((3, 1, 1, 1), 0.3), y), ref)
    assert torch.equal(model(x, torch.tensor(0.3, dtype=torch.float64), y), ref)
    with pytest.raises(ValueError, match="batch size 3"):
        model(x, torch.rand(2), y)


def test_image_size_not_divisible_is_rejected_with_the_fix():
    with pytest.raises(ValueError, match=r"image_size 28 is not divisible by 2\*\*3 = 8") as info:
        UNet(in_channels=1, image_size=28, base_channels=8, channel_mults=(1, 2, 2, 2))
    msg = str(info.value)
    assert "(1, 2, 2)" in msg and "pad the images to 32" in msg and "\n" not in msg
    # 3 levels work for 28
    UNet(in_channels=1, image_size=28, base_channels=8, channel_mults=(1, 2, 2), attention_resolutions=())


def test_forward_rejects_other_sizes_and_channels():
    model = small_unet()
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\).*\(2, 1, 32, 32\)"):
        model(torch.randn(2, 1, 32, 32), 0.5)
    with pytest.raises(ValueError, match=r"\(2, 3, 28, 28\)"):
        model(torch.randn(2, 3, 28, 28), 0.5)


def test_attention_resolution_must_exist():
    with pytest.raises(ValueError, match=r"\[16\].*\[28, 14, 7\]"):
        small_unet(attention=(16,))


def test_attention_blocks_sit_at_the_requested_resolutions():
    model = small_unet(attention=(14,))
    sizes = {}

    def hook(module, args, out):
        sizes.setdefault(out.shape[-1], 0)
        sizes[out.shape[-1]] += 1

    for m in model.modules():
        if isinstance(m, AttentionBlock):
            m.register_forward_hook(hook)
    model(torch.randn(1, 1, 28, 28), 0.5)
    # encoder (1 block) + decoder (2 blocks) at 14x14, plus the middle block at 7x7
    assert sizes == {14: 3, 7: 1}
    no_mid = small_unet(attention=(), mid_attention=False)
    assert not any(isinstance(m, AttentionBlock) for m in no_mid.modules())


def test_group_norm_and_heads_clamp_to_divisors():
    assert GroupNorm32(256, 32).num_groups == 32
    assert GroupNorm32(128, 32).num_groups == 32
    assert GroupNorm32(48, 32).num_groups == 12
    assert GroupNorm32(32, 32).num_groups == 8
    assert GroupNorm32(8, 32).num_groups == 2
    assert GroupNorm32(3, 32).num_groups == 1
    assert norm_groups(8, 32, min_channels_per_group=1) == 8
    assert AttentionBlock(12, num_heads=8).num_heads == 6
    assert AttentionBlock(256, head_channels=64).num_heads == 4
    with pytest.raises(ValueError):
        AttentionBlock(96, head_channels=64)


@pytest.mark.parametrize("scale_shift", [False, True])
def test_every_group_norm_keeps_several_channels_per_group(scale_shift):
    # a one-channel group would subtract the per-channel embedding added before it
    model = small_unet(num_classes=10, scale_shift=scale_shift)
    norms = [m for m in model.modules() if isinstance(m, GroupNorm32)]
    assert norms
    for m in norms:
        assert m.num_channels // m.num_groups >= 4 or m.num_groups == 1


def test_cifar10_configuration_has_about_36m_parameters():
    model = UNet(
        in_channels=3,
        image_size=32,
        base_channels=128,
        channel_mults=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_resolutions=(16,),
        dropout=0.1,
    )
    n = count_parameters(model)
    assert 34e6 <= n <= 38e6
    # DDPM / torchcfm CIFAR-10 U-Net: 35.7 M
    assert n == 35_746_307
    assert model.num_parameters() == n
    assert count_parameters(UNet()) == n  # the defaults are this recipe
    # FiLM conditioning doubles every embedding projection
    assert count_parameters(UNet(scale_shift=True)) > n


def test_batch_independence_in_eval_mode():
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10, dropout=0.1)).eval()
    x, t, y = torch.randn(4, 1, 28, 28), torch.rand(4), torch.tensor([0, 3, 10, 7])
    full = model(x, t, y)
    for i in range(4):
        alone = model(x[i : i + 1], t[i : i + 1], y[i : i + 1])
        torch.testing.assert_close(alone, full[i : i + 1], atol=1e-5, rtol=1e-4)
    # replacing the other samples does not change sample 0
    other = torch.cat([x[:1], torch.randn(3, 1, 28, 28)])
    torch.testing.assert_close(model(other, t, y)[:1], full[:1], atol=1e-5, rtol=1e-4)


def test_dropout_is_active_in_training_mode_only():
    torch.manual_seed(0)
    model = perturb(small_unet(dropout=0.5))
    x = torch.randn(2, 1, 28, 28)
    assert not torch.equal(model.train()(x, 0.5), model(x, 0.5))
    model.eval()
    assert torch.equal(model(x, 0.5), model(x, 0.5))


def test_bf16_autocast_is_close_to_fp32():
    torch.manual_seed(0)
    # bf16 convolutions are slow on CPUs without native bf16: keep this one tiny
    model = perturb(small_unet(image_size=8, channel_mults=(1, 2), attention=(4,), num_classes=10)).eval()
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([1, 2])
    with torch.no_grad():
        ref = model(x, t, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = model(x, t, y)
    assert out.dtype == torch.float32  # returned in x's dtype
    rel = ((out - ref).norm() / ref.norm()).item()
    assert 0 < rel < 0.05  # different (it ran in bf16), but close


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10)).eval()
    x, t, y = torch.randn(2, 1, 28, 28), torch.rand(2), torch.tensor([1, 2])
    ref = model(x, t, y)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.contiguous(memory_format=torch.channels_last), t, y)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_config_rebuilds_the_same_model():
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10, time_embedding="fourier")).eval()
    clone = UNet(**model.config).eval()
    clone.load_state_dict(model.state_dict())  # strict: same structure, Fourier frequencies included
    x, t = torch.randn(2, 1, 28, 28), torch.rand(2)
    assert torch.equal(clone(x, t), model(x, t))


def test_classifier_free_guidance_uses_the_null_label():
    torch.manual_seed(0)
    model = perturb(small_unet(num_classes=10)).eval()
    x, t, y = torch.randn(2, 1, 28, 28), torch.rand(2), torch.tensor([4, 5])
    cond, uncond = model(x, t, y), model(x, t)
    with torch.no_grad():
        guided = ClassifierFreeGuidance(model, y, 3.0, model.null_label)(x, t)
    torch.testing.assert_close(guided, uncond + 3.0 * (cond - uncond), atol=1e-5, rtol=1e-4)


def test_a_few_training_steps_fit_a_batch():
    torch.manual_seed(0)
    model = small_unet(image_size=8, channel_mults=(1, 2), attention=(4,), num_classes=3)
    path = LinearPath()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    data, y = torch.randn(8, 1, 8, 8), torch.randint(0, 3, (8,))
    noise, t = torch.randn_like(data), torch.rand(8)
    losses = []
    for _ in range(30):
        loss = flow_matching_loss(model, path, data, t, noise=noise, model_kwargs={"y": y})
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    # the zero-initialised layers have moved, so the label now reaches the output
    assert model.class_embed.embedding.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        a = model(data[:1], t[:1], torch.tensor([0]))
        b = model(data[:1], t[:1], torch.tensor([1]))
    assert (a - b).abs().max() > 1e-5
