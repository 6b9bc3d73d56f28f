"""A diffusers AutoencoderKL as the latent codec: a latent run trains and samples decoded images on a tiny random VAE,
the scaling is the VAE config's as written, the checkpoint names the VAE with a digest, and what can go wrong is one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys

import diffusers  # the optional extra .[diffusers]; the dev extra installs it, so this file always runs
import pytest
import torch
from image_helpers import blob_images, tiny_config

from imgflow import Sampler
from imgflow.checkpoint import CheckpointError, load_checkpoint
from imgflow.config import ConfigError
from imgflow.diffusers_vae import scaling_from_config
from imgflow.latents import encode_data, load_autoencoder
from imgflow.training.trainer import train


def tiny_vae(folder, **config):
    """A random AutoencoderKL of 1-channel 8x8 images: two blocks (factor 2), 2 latent channels, saved like a Hub folder."""
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(in_channels=1, out_channels=1, down_block_types=("DownEncoderBlock2D",) * 2,
                                  up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                                  latent_channels=2, norm_num_groups=4, sample_size=8, **config)
    vae.save_pretrained(folder)
    return folder


def latent_config(out_dir, vae, **overrides):
    base = {"data.autoencoder": str(vae), "data.latent_cache_dir": str(out_dir.parent / "latents"), "model.arch": "dit",
            "model.dit.patch_size": 1, "model.dit.hidden_size": 16, "model.dit.depth": 1, "model.dit.num_heads": 2,
            "train.steps": 3, "train.checkpoint_every": 3}
    return tiny_config(out_dir, **{**base, **overrides})


@pytest.fixture(scope="module")
def vae(tmp_path_factory):
    return tiny_vae(tmp_path_factory.mktemp("vae") / "tiny-vae", scaling_factor=0.5, shift_factor=0.25)


def test_the_scaling_is_the_configs_as_written():
    assert scaling_from_config({"scaling_factor": 0.18215}) == (0.0, 0.18215)                        # SD 1.x/2.x
    assert scaling_from_config({"scaling_factor": 1.5305, "shift_factor": 0.0609}) == (0.0609, 1.5305)  # SD3
    assert scaling_from_config({"scaling_factor": 0.5, "latents_mean": [1.0, -1.0], "latents_std": [2.0, 4.0]}) == ((1.0, -1.0), (0.25, 0.125))
    with pytest.raises(ConfigError, match="one positive std per latent channel"):
        scaling_from_config({"latents_mean": [0.0, 0.0], "latents_std": [1.0]})


def test_a_latent_run_trains_and_samples_decoded_images_on_a_diffusers_vae(vae, tmp_path):
    data = blob_images(48, 8)
    train(latent_config(tmp_path / "run", vae), data=data, progress=False)
    ckpt = load_checkpoint(tmp_path / "run")
    latent = ckpt.record.latent
    assert latent["kind"] == "diffusers" and latent["source"] == str(vae) and len(latent["digest"]) == 32
    assert (latent["shift"], latent["scale"]) == (0.25, 0.5) and not ckpt.autoencoder  # referenced, not copied into the file
    assert ckpt.spec.shape == (2, 4, 4)
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    samples = sampler.sample(4, labels=[1], steps=2, seed=0)
    assert samples.images.shape == (4, 1, 8, 8) and sampler.codec.kind == "diffusers"
    # the sampler decodes exactly what the VAE decodes of the model's latents, unscaled with the config's numbers
    raw = Sampler(sampler.model, dataclasses.replace(ckpt.record, latent=None), device="cpu")
    z = raw.sample(4, labels=[1], steps=2, seed=0, clip=False).images
    with torch.no_grad():
        expected = diffusers.AutoencoderKL.from_pretrained(str(vae)).decode(z / 0.5 + 0.25).sample
    assert torch.allclose(samples.images, expected.clamp(-1, 1), atol=1e-5)
    # a model folder references the VAE (no codec file) and loads back to the same samples
    folder = sampler.save_pretrained(tmp_path / "folder")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert torch.equal(Sampler.from_pretrained(folder).sample(4, labels=[1], steps=2, seed=0).images, samples.images)
    # the latents were encoded once, into the cache, with the config's scaling: z = (mean - 0.25) * 0.5
    codec = load_autoencoder(vae, image_size=8)
    said: list[str] = []
    latents, _ = encode_data(codec, data, cache_dir=tmp_path / "latents", log=said.append)
    assert not [m for m in said if m.startswith("encoding")]  # the run's cache, reused
    x, _ = data.batch(torch.arange(4))
    with torch.no_grad():
        mean = diffusers.AutoencoderKL.from_pretrained(str(vae)).encode(x).latent_dist.mean
    assert torch.allclose(latents.images[:4].float(), (mean - 0.25) * 0.5, atol=2e-3)  # float16 cache


def test_a_hand_edited_scaling_factor_is_used_as_written_and_reported(vae, tmp_path):
    edited = shutil.copytree(vae, tmp_path / "edited")
    config = json.loads((edited / "config.json").read_text())
    (edited / "config.json").write_text(json.dumps({**config, "scaling_factor": 50.0}))
    codec = load_autoencoder(edited, image_size=8)
    said: list[str] = []
    latents, scaled = encode_data(codec, blob_images(48, 8), cache_dir=tmp_path / "latents", log=said.append)
    assert scaled.scale == 50.0 and scaled.shift == 0.25  # not guessed, not re-measured
    warning = [m for m in said if m.startswith("warning:")]
    assert len(warning) == 1 and "used as written" in warning[0] and "scale 50.0" in warning[0]
    assert float(latents.images.float().square().mean().sqrt()) > 2.0  # what the warning says: far from unit size
    # the same weights: the same digest, so a model trained with the old config still decodes with its own numbers
    assert codec.digest == load_autoencoder(vae, image_size=8).digest


def test_a_vae_that_changed_or_went_missing_is_refused_when_sampling(vae, tmp_path):
    moved = shutil.copytree(vae, tmp_path / "vae")
    train(latent_config(tmp_path / "run", moved, **{"train.steps": 1, "train.checkpoint_every": 1}), data=blob_images(24, 8), progress=False)
    with torch.no_grad():  # the same config with other weights (fine-tuned, or another VAE saved over it)
        other = diffusers.AutoencoderKL.from_pretrained(str(moved))
        for p in other.parameters():
            p.add_(0.01)
    other.save_pretrained(moved)
    with pytest.raises(CheckpointError, match="is not the one .* was trained with"):
        Sampler.from_checkpoint(tmp_path / "run")
    shutil.rmtree(moved)
    with pytest.raises(CheckpointError, match="which is not on this machine"):
        Sampler.from_checkpoint(tmp_path / "run")


def test_without_diffusers_a_vae_config_fails_saying_what_to_install(vae, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now raises ImportError
    with pytest.raises(ConfigError, match=r'is a diffusers AutoencoderKL, and diffusers is not installed: pip install -e "\.\[diffusers\]"'):
        load_autoencoder(vae, image_size=8)


def test_an_image_size_the_vae_cannot_halve_and_other_channels_are_refused(vae, tmp_path):
    with pytest.raises(ConfigError, match="downsamples by 2, and data.image_size = 7 is not a multiple"):
        load_autoencoder(vae, image_size=7)
    codec = load_autoencoder(vae, image_size=8)
    three = blob_images(8, 8)
    three = three.__class__(three.images.repeat(1, 3, 1, 1), three.labels)
    with pytest.raises(ConfigError, match="is a VAE of 1-channel images, but this data has 3 channels"):
        encode_data(codec, three, cache_dir=tmp_path / "latents")
