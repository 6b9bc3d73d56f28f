"""Latent flow matching: the latent cache, training on latents, a sampler that decodes, and every bad input."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from image_helpers import blob_images, tiny_config
from test_autoencoder import ae_config

from imgflow import Sampler
from imgflow.checkpoint import CheckpointError, load_checkpoint
from imgflow.config import ConfigError
from imgflow.data import ImageData, load_image_data
from imgflow.latents import encode_data, load_autoencoder, weights_digest
from imgflow.training.trainer import train


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory):
    """A tiny autoencoder of 8x8 blobs (factor 2, latents 2x4x4) and the data it was trained on."""
    root = tmp_path_factory.mktemp("ae")
    data = blob_images(96, 8)
    train(ae_config(root / "ae"), data=data, progress=False)
    return root / "ae", data


def latent_config(out_dir, autoencoder, **overrides):
    base = {"data.autoencoder": str(autoencoder), "data.latent_cache_dir": str(out_dir.parent / "latents"), "model.arch": "dit",
            "model.dit.patch_size": 1, "model.dit.hidden_size": 16, "model.dit.depth": 1, "model.dit.num_heads": 2,
            "train.steps": 6, "train.checkpoint_every": 3}
    return tiny_config(out_dir, **{**base, **overrides})


def test_latent_cache_is_unit_variance_reused_and_rebuilt_on_any_change(autoencoder_run, tmp_path):
    ae_dir, data = autoencoder_run
    codec = load_autoencoder(ae_dir)
    said: list[str] = []
    latents, scaled = encode_data(codec, data, cache_dir=tmp_path, log=said.append)
    assert latents.shape == (2, 4, 4) and len(latents) == 96 and latents.images.dtype == torch.float16
    values = latents.images.double()
    assert abs(float(values.mean())) < 1e-3 and abs(float(values.std()) - 1) < 1e-3  # float16 rounding only
    assert torch.equal(latents.labels, data.labels)
    # the scaled codec encodes to the cached values (to float16 precision)
    x, _ = data.batch(torch.arange(4))
    assert torch.allclose(scaled.encode(x), latents.images[:4].float(), atol=4e-3)
    assert len([m for m in said if m.startswith("encoding")]) == 1
    again, _ = encode_data(codec, data, cache_dir=tmp_path, log=said.append)
    assert len([m for m in said if m.startswith("encoding")]) == 1 and again.info["latent_cache"] == latents.info["latent_cache"]
    # other pixels, or other autoencoder weights: another cache
    other = ImageData(data.images.flip(-1), data.labels)
    assert encode_data(codec, other, cache_dir=tmp_path)[0].info["latent_cache"] != latents.info["latent_cache"]
    changed = dataclasses.replace(codec, digest=weights_digest({"w": torch.ones(1)}))
    assert encode_data(changed, data, cache_dir=tmp_path)[0].info["latent_cache"] != latents.info["latent_cache"]
    # a truncated cache is rebuilt, never read
    cache, expected = latents.info["latent_cache"], latents.images.clone()
    del latents, again  # their memory maps would fault on the truncated file
    with open(os.path.join(cache, "latents.f16"), "r+b") as fh:
        fh.truncate(100)
    rebuilt, _ = encode_data(codec, data, cache_dir=tmp_path, log=said.append)
    assert any("incomplete" in m for m in said) and torch.equal(rebuilt.images, expected)


def test_latent_run_trains_resumes_and_samples_decoded_images(autoencoder_run, tmp_path):
    ae_dir, data = autoencoder_run
    train(latent_config(tmp_path / "run", ae_dir), data=data, progress=False)
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.spec.shape == (2, 4, 4) and ckpt.record.latent is not None and ckpt.autoencoder
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    assert sampler.image_shape == (1, 8, 8) and sampler.latent_spec.shape == (2, 4, 4)
    samples = sampler.sample(5, labels=[3], steps=3)
    assert samples.images.shape == (5, 1, 8, 8) and samples.images.abs().max() <= 1
    # the same draw without decoding, decoded by the autoencoder on its own: the sampler decodes exactly that
    raw = Sampler(sampler.model, dataclasses.replace(sampler.record, latent=None), device="cpu")
    latents = raw.sample(5, labels=[3], steps=3, clip=False).images
    assert torch.allclose(samples.images, sampler.codec.decode(latents).clamp(-1, 1), atol=1e-5)
    # the strip between two noises starts and ends at the seeded samples
    strip = sampler.interpolate(4, label=3, seeds=(0, 1), steps=3)
    assert torch.allclose(strip.images[0], sampler.sample(1, labels=[3], steps=3, seed=0).images[0], atol=1e-5)
    assert torch.allclose(strip.images[-1], sampler.sample(1, labels=[3], steps=3, seed=1).images[0], atol=1e-5)
    # the latent run resumes bit-exactly like a pixel run
    resumed = tmp_path / "resumed"
    train(latent_config(resumed, ae_dir, **{"train.steps": 3}), data=data, progress=False)
    train(latent_config(resumed, ae_dir), resume="latest", data=data, progress=False)
    for key, value in load_checkpoint(resumed).model.items():
        assert torch.equal(value, ckpt.model[key]), key


def test_sampler_decodes_without_the_autoencoder_file(autoencoder_run, tmp_path):
    import shutil

    ae_dir, data = autoencoder_run
    copy = tmp_path / "ae_copy"
    shutil.copytree(ae_dir, copy)
    train(latent_config(tmp_path / "run", copy), data=data, progress=False)
    shutil.rmtree(copy)
    assert Sampler.from_checkpoint(tmp_path / "run", device="cpu").sample(2, steps=2).images.shape == (2, 1, 8, 8)


def test_bad_latent_inputs_get_one_line_and_write_nothing(autoencoder_run, tmp_path):
    ae_dir, data = autoencoder_run
    run = tmp_path / "run"
    with pytest.raises(CheckpointError, match=r"data.autoencoder = .*no_such_autoencoder does not exist; train the autoencoder first"):
        train(latent_config(run, tmp_path / "no_such_autoencoder"), data=data, progress=False)
    assert not run.exists()
    # a flow model given as the autoencoder
    flow = tmp_path / "flow"
    train(tiny_config(flow, **{"train.steps": 1}), data=data, progress=False)
    with pytest.raises(CheckpointError, match="is a checkpoint of a unet model, not of an autoencoder"):
        train(latent_config(run, flow), data=data, progress=False)
    # a 1-channel autoencoder for 3-channel images
    rgb = ImageData(data.images.expand(-1, 3, -1, -1).contiguous(), data.labels)
    with pytest.raises(ConfigError, match="trained on 1-channel images, but this data has 3 channels"):
        train(latent_config(run, ae_dir), data=rgb, progress=False)
    with pytest.raises(ConfigError, match="trained on 8x8 images, but data.image_size is 16"):
        train(latent_config(run, ae_dir, **{"data.image_size": 16}), data=data, progress=False)
    assert not run.exists()
    # an autoencoder does not sample; a latent record without its codec cannot decode
    with pytest.raises(ConfigError, match="is an autoencoder, which does not sample"):
        Sampler.from_checkpoint(ae_dir)
    with pytest.raises(ConfigError, match="a model of latents needs its autoencoder"):
        Sampler(torch.nn.Linear(1, 1), latent_config(run, ae_dir))
    # an autoencoder trains on pixels
    with pytest.raises(ConfigError, match="flow.objective = .autoencoder. trains on pixels: leave data.autoencoder out"):
        ae_config(run, **{"data.autoencoder": str(ae_dir)})


def test_resuming_after_the_autoencoder_was_retrained_is_refused(autoencoder_run, tmp_path):
    import shutil

    ae_dir, data = autoencoder_run
    own = tmp_path / "ae"
    shutil.copytree(ae_dir, own)
    run = tmp_path / "run"
    train(latent_config(run, own, **{"train.steps": 3}), data=data, progress=False)
    before = sorted(p.name for p in run.iterdir())
    shutil.rmtree(own)
    train(ae_config(own, **{"train.steps": 5}), data=data, progress=False)  # retrained: other weights, same place
    with pytest.raises(CheckpointError, match="is not the one this run was trained on"):
        train(latent_config(run, own), resume="latest", data=data, progress=False)
    with pytest.raises(CheckpointError, match="trained on latents, this run asks for pixels"):
        train(latent_config(run, own, **{"data.autoencoder": "", "data.latent_cache_dir": ""}), resume="latest", data=data, progress=False)
    assert sorted(p.name for p in run.iterdir()) == before


def test_train_script_with_a_missing_autoencoder_exits_2_with_one_line(tmp_path, capsys):
    from imgflow.cli import run
    from imgflow.cli.train import main as train_main

    config = Path(__file__).resolve().parents[1] / "configs" / "mnist_latent_dit.toml"
    argv = ["--config", str(config), "--data.autoencoder", str(tmp_path / "vae"),
            "--run.output_dir", str(tmp_path / "run"), "--no-progress"]
    code = run(train_main, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: data.autoencoder = "), lines
    assert "does not exist; train the autoencoder first" in lines[0]
    assert not (tmp_path / "run").exists()


def test_mean_flow_trains_on_latents_and_samples_decoded_images_in_one_step(autoencoder_run, tmp_path):
    ae_dir, data = autoencoder_run
    cfg = latent_config(tmp_path / "mf", ae_dir, **{"flow.objective": "mean_flow", "train.steps": 3})
    train(cfg, data=data, progress=False)
    sampler = Sampler.from_checkpoint(tmp_path / "mf", device="cpu")
    assert sampler.flow_map
    one = sampler.sample(4, labels=[1], solver="flow_map", steps=1)
    assert one.nfe == 1 and one.images.shape == (4, 1, 8, 8) and torch.isfinite(one.images).all()


def test_a_held_out_split_is_encoded_with_the_train_splits_statistics(autoencoder_run, tmp_path):
    """The shift and scale of any split's latents are the train split's, stored in its cache; encoding a split other
    than train without them is refused. Its own statistics differ (so the test can fail): its latents are not unit-variance."""
    import json

    from image_helpers import write_idx_mnist

    from imgflow.latents import encoded_dataset

    ae_dir, _ = autoencoder_run
    codec = load_autoencoder(ae_dir)
    data_section = tiny_config(tmp_path / "run", **{"data.data_root": str(write_idx_mnist(tmp_path / "data", n_train=64, n_test=40, size=8)),
                                                    "data.image_size": 8}).data
    _, train_codec = encoded_dataset(codec, data_section, "train", cache_dir=tmp_path / "cache")
    test_latents, test_codec = encoded_dataset(codec, data_section, "test", cache_dir=tmp_path / "cache")
    assert (test_codec.shift, test_codec.scale) == (train_codec.shift, train_codec.scale)
    meta = json.loads((Path(test_latents.info["latent_cache"]) / "meta.json").read_text())
    assert (meta["shift"], meta["scale"], meta["statistics"]) == (train_codec.shift, train_codec.scale, "train split")
    held_out = test_latents.images.double()
    assert abs(float(held_out.std()) - 1.0) > 1e-3 or abs(float(held_out.mean())) > 1e-3  # not its own statistics
    pixels = load_image_data("mnist", tmp_path / "data", train=False, image_size=8, download=False)
    x, _ = pixels.batch(torch.arange(4))
    assert torch.allclose(train_codec.encode(x), test_latents.images[:4].float(), atol=4e-3)  # float16 rounding
    with pytest.raises(ValueError, match="any other split is scaled with the train split's: pass scaling="):
        encode_data(codec, pixels, data_section, "test", cache_dir=tmp_path / "cache")


def test_two_encodings_of_one_new_latent_cache_build_it_once(autoencoder_run, tmp_path):
    from tests.test_cache_concurrency import race

    ae_dir, data = autoencoder_run
    codec = load_autoencoder(ae_dir)
    encode = lambda log: encode_data(codec, data, cache_dir=tmp_path, log=log)[0]
    (first, second), said_a, said_b = race(encode, encode, "encoding")
    assert [m for m in said_a + said_b if m.startswith("encoding")] == [said_a[0]]  # the second waited, then read it
    assert any(m.startswith("waiting for process") for m in said_b)
    assert first.info["latent_cache"] == second.info["latent_cache"] and torch.equal(first.images, second.images)


def test_a_latent_model_folder_carries_its_autoencoder_and_samples_the_same_images(autoencoder_run, tmp_path):
    ae_dir, data = autoencoder_run
    train(latent_config(tmp_path / "run", ae_dir, **{"train.steps": 2, "train.checkpoint_every": 2}), data=data, progress=False)
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    folder = sampler.save_pretrained(tmp_path / "latent-model")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "codec.safetensors", "config.json", "model.safetensors"]
    loaded = Sampler.from_pretrained(folder)  # decodes with the codec inside the folder (without it, below, it cannot)
    assert loaded.image_shape == (1, 8, 8) and loaded.codec.digest == sampler.codec.digest
    assert torch.equal(loaded.sample(4, steps=2, seed=1).images, sampler.sample(4, steps=2, seed=1).images)
    (folder / "codec.safetensors").unlink()
    with pytest.raises(CheckpointError, match="codec.safetensors is missing"):
        Sampler.from_pretrained(folder)
