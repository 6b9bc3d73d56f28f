"""The KL autoencoder, its loss, slerp and PSNR: shapes, the math against independent references, training."""

from __future__ import annotations

import json
import math

import pytest
import torch
from image_helpers import blob_images, tiny_config
from PIL import Image

from imgflow.config import ConfigError
from imgflow.core.interpolation import slerp
from imgflow.core.vae import gaussian_kl, reconstruction_error, vae_loss
from imgflow.evaluation.autoencoder import psnr
from imgflow.nn.autoencoder import AutoencoderOptions, KLAutoencoder
from imgflow.resolved_run import check_model_fits
from imgflow.training.trainer import train


def ae_config(out_dir, **overrides):
    """A tiny autoencoder run on 8x8 images: factor 2, 2 latent channels, widths 4-8."""
    base = {"model.arch": "autoencoder", "flow.objective": "autoencoder", "model.autoencoder.factor": 2,
            "model.autoencoder.latent_channels": 2, "model.autoencoder.base_channels": 4, "train.lr": 3e-3,
            "train.steps": 40, "train.batch_size": 16, "train.log_every": 10, "train.checkpoint_every": 40}
    return tiny_config(out_dir, **{**base, **overrides})


@pytest.mark.parametrize("factor, latent_side", [(2, 8), (4, 4), (8, 2)])
def test_autoencoder_shapes_follow_the_factor(factor, latent_side):
    ae = KLAutoencoder(3, 16, AutoencoderOptions(factor=factor, latent_channels=3, base_channels=4, attention=True))
    x = torch.randn(2, 3, 16, 16)
    mean, logvar = ae.encode(x)
    assert mean.shape == logvar.shape == (2, 3, latent_side, latent_side) == (2, *ae.latent_shape)
    assert ae.decode(mean).shape == x.shape
    recon, m2, _ = ae(x, sample=False)
    assert torch.equal(m2, mean) and recon.shape == x.shape


def test_autoencoder_rejects_sizes_and_inputs_it_cannot_take():
    with pytest.raises(ValueError, match="factor 8 needs an image size divisible by it, got 28; use factor 2 or 4"):
        KLAutoencoder(1, 28, AutoencoderOptions(factor=8))
    with pytest.raises(ValueError, match="channel_mults needs log2"):
        AutoencoderOptions(factor=4, channel_mults=(1, 2)).validate()
    ae = KLAutoencoder(1, 8, AutoencoderOptions(factor=2, base_channels=4))
    with pytest.raises(ValueError, match=r"takes images of shape \(B, 1, 8, 8\)"):
        ae.encode(torch.randn(1, 3, 8, 8))


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mean, logvar = torch.randn(5, 2, 3, 3, generator=g), torch.randn(5, 2, 3, 3, generator=g)
    q = torch.distributions.Normal(mean, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).flatten(1).sum(1)
    assert torch.allclose(gaussian_kl(mean, logvar), expected, atol=1e-5)
    assert torch.allclose(gaussian_kl(torch.zeros(1, 4), torch.zeros(1, 4)), torch.zeros(1))


def test_vae_loss_is_reconstruction_plus_beta_kl_per_pixel():
    g = torch.Generator().manual_seed(1)
    x, r = torch.rand(3, 1, 4, 4, generator=g), torch.rand(3, 1, 4, 4, generator=g)
    mean, logvar = torch.randn(3, 2, 2, 2, generator=g), torch.randn(3, 2, 2, 2, generator=g)
    loss = vae_loss(r, x, mean, logvar, beta=0.5, kind="l1")
    assert torch.allclose(loss.reconstruction, (r - x).abs().flatten(1).mean(1))
    assert torch.allclose(loss.total, loss.reconstruction + 0.5 * gaussian_kl(mean, logvar) / 16)
    with pytest.raises(ValueError, match="unknown reconstruction error 'l3'"):
        reconstruction_error(r, x, "l3")


def test_slerp_ends_at_both_noises_and_keeps_the_norm_between_orthogonal_ones():
    a, b = torch.tensor([3.0, 0.0]), torch.tensor([0.0, 3.0])
    path = slerp(a, b, torch.linspace(0, 1, 5))
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0), atol=1e-6)  # a quarter circle of radius 3
    assert torch.allclose(path[2], torch.tensor([3.0, 3.0]) / math.sqrt(2), atol=1e-6)
    assert torch.allclose(slerp(a, a, torch.tensor([0.3])), a[None])  # zero angle: the straight line


def test_psnr_of_a_known_error():
    x = torch.zeros(2, 1, 4, 4)
    y = x + torch.tensor([0.1, 0.2]).view(2, 1, 1, 1)  # MSE 0.01 and 0.04 in a range of 2
    assert torch.allclose(psnr(y, x), torch.tensor([10 * math.log10(4 / 0.01), 10 * math.log10(4 / 0.04)]))


def test_autoencoder_trains_with_the_trainer_logs_its_parts_and_draws_reconstructions(tmp_path):
    data = blob_images(96, 8)
    cfg = ae_config(tmp_path / "ae", **{"train.sample_every": 40, "sample.num_images": 12})
    result = train(cfg, data=data, progress=False)
    records = [json.loads(line) for line in (tmp_path / "ae" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [10, 20, 30, 40]
    assert all("reconstruction" in r and "kl" in r and "loss_by_t" not in r for r in records)
    assert all(abs(r["loss"] - (r["reconstruction"] + 1e-4 * r["kl"] / 64)) < 1e-5 for r in records)
    # the blobs are easy: 40 steps take the reconstruction error well below its start (about 0.5 for x in [-1, 1])
    assert records[-1]["reconstruction"] < 0.5 * records[0]["reconstruction"]
    grid = Image.open(tmp_path / "ae" / "samples" / "step-00000040.png")
    # 6 originals in one row of 8, a blank row, 6 reconstructions: three rows of 8 + 2 px padding
    assert grid.size == (8 * 10 + 2, 3 * 10 + 2)
    assert result.step == 40
    from imgflow.training.metrics_plot import plot_autoencoder_curves

    figure = plot_autoencoder_curves([tmp_path / "ae"], tmp_path / "curves.png")
    assert Image.open(figure).size == (11 * 120, 4 * 120)  # two panels, 11 x 4 inches at 120 dpi


def test_autoencoder_objective_and_backbone_must_match(tmp_path):
    with pytest.raises(ConfigError, match="trains a flow model, which model.arch = 'autoencoder' is not; use model.arch = unet"):
        tiny_config(tmp_path, **{"model.arch": "autoencoder"})
    with pytest.raises(ConfigError, match="trains an autoencoder, which model.arch = 'unet' is not; use model.arch = autoencoder"):
        tiny_config(tmp_path, **{"flow.objective": "autoencoder"})
    cfg = ae_config(tmp_path, **{"model.autoencoder.factor": 4, "data.image_size": 6})
    with pytest.raises(ConfigError, match="factor 4 needs an image size divisible by it, got 6"):
        check_model_fits(cfg)


def test_footprint_counts_multiply_adds_and_saved_activations_without_computing():
    from imgflow.nn.dit import DiT, dit_flops
    from imgflow.nn.footprint import measure_footprint

    conv = measure_footprint(lambda: torch.nn.Conv2d(3, 8, 3, padding=1), lambda m: m(torch.empty(1, 3, 10, 10)))
    assert conv.macs == 10 * 10 * 8 * 3 * 9 and conv.parameters == 8 * 3 * 9 + 8
    assert conv.saved_bytes >= 3 * 10 * 10 * 4  # backward needs at least the input
    assert conv.training_memory_bytes(2, ema=False) == 224 * 16 + 2 * conv.saved_bytes
    # the DiT's closed-form count (which leaves the small embedding MLPs out) agrees within 1 %
    dit = measure_footprint(lambda: DiT(in_channels=4, image_size=16, patch_size=2, hidden_size=64, depth=2, num_heads=2, num_classes=10),
                            lambda m: m(torch.empty(1, 4, 16, 16), torch.empty(1), y=torch.zeros(1, dtype=torch.long)))
    formula = dit_flops(in_channels=4, out_channels=4, image_size=16, patch_size=2, hidden_size=64, depth=2)
    assert abs(dit.macs - formula) / formula < 0.01
