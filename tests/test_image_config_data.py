"""Configuration parsing/validation and in-memory datasets."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imgflow.config import ConfigError, RunConfig, load_config, parse_literal
from imgflow.data import DatasetNotFoundError, fit_size, load_image_data
from imgflow.training.batches import BatchSchedule
from tests.image_helpers import write_idx_mnist

REPO = Path(__file__).resolve().parents[1]
CONFIGS = sorted((REPO / "configs").glob("*.toml"))


def _load_shipped(path: Path) -> RunConfig:
    return load_config(path, {"data.folder.path": "PICS"}) if "folder" in path.name else load_config(path)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load_round_trip_and_build_at_their_resolution(path):
    """Every config loads (a folder recipe once it is given data.folder.path), and its network takes its inputs: images, or
    for a latent config the latents of the shipped autoencoder config it names (by its run.output_dir). GPU recipes run
    on PyTorch's meta device (shapes only, no arithmetic)."""
    from imgflow.data import DataSpec, dataset_spec
    from imgflow.resolved_run import build_model, check_model_fits

    raw = _load_shipped(path)
    assert RunConfig.from_json(raw.to_json()).to_dict() == raw.to_dict()
    if "folder" in path.name:
        with pytest.raises(ConfigError, match="needs data.folder.path"):
            load_config(path)
        spec = DataSpec("folder", raw.data.folder.channels or 3, raw.data.image_size, tuple("abcdefghij"))
    else:
        spec = dataset_spec(raw.data)
    if raw.data.autoencoder == "stabilityai/sd-vae-ft-ema":  # the SD VAE (its config.json): factor 8, 4 latent channels
        spec = DataSpec(spec.dataset, 4, raw.data.image_size // 8, spec.class_names)
    elif raw.data.autoencoder:
        makers = [c for c in map(_load_shipped, CONFIGS) if c.model.arch == "autoencoder" and c.run.output_dir == raw.data.autoencoder]
        assert makers, f"no shipped autoencoder config writes {raw.data.autoencoder}"
        ae = makers[0]
        assert (ae.data.dataset, ae.data.image_size) == (raw.data.dataset, raw.data.image_size)
        o = ae.model.autoencoder
        spec = DataSpec(spec.dataset, o.latent_channels, raw.data.image_size // o.factor, spec.class_names)
    check_model_fits(raw, spec.image_size)
    device = "meta" if "gpu" in path.name else "cpu"
    with torch.device(device):
        model = build_model(raw, spec).eval()
        x = torch.randn(1, *spec.shape)
        with torch.no_grad():
            if raw.model.arch == "autoencoder":
                out, mean, _ = model(x)
                assert mean.shape == (1, raw.model.autoencoder.latent_channels, *[raw.data.image_size // raw.model.autoencoder.factor] * 2)
            else:
                out = model(x, torch.rand(1), torch.tensor([1]) if spec.num_classes and raw.model.class_conditional else None)
    assert out.shape == x.shape


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"train.lrr": 1e-3}, "unknown config key 'train.lrr'.*did you mean 'train.lr'"),
        ({"train.lr": "fast"}, "train.lr .* must be a number, got str 'fast'"),
        ({"train.steps": 1.5}, "train.steps .* must be an integer"),
        ({"train.lr": -1e-3}, "train.lr must be > 0"),
        ({"train.batch_size": 0}, "train.batch_size must be >= 1"),
        ({"model.class_conditional": False, "sample.guidance_scale": 3.0}, "needs a class-conditional model"),
        ({"flow.schedule": "quadratic"}, "flow.schedule = 'quadratic' is not one of: linear, sqrt, cosine"),
        ({"model.unet.channel_mults": [1, "x"]}, "model.unet.channel_mults .* must be a list of integers"),
        ({"data.hflip": True}, "data.hflip = true would mirror mnist images into other symbols"),
        ({"sample.solver": "rk5"}, "sample.solver = 'rk5' is not one of: euler, midpoint, heun, rk4, adaptive, euler_maruyama"),
        ({"train.log_with": "tensorbored"}, "train.log_with = 'tensorbored' is not one of: none, all, "),
    ],
)
def test_bad_config_values_are_rejected_with_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_toml_files(tmp_path):
    bad_section = tmp_path / "a.toml"
    bad_section.write_text("[trian]\nsteps = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config section \[trian\].*did you mean 'train'"):
        load_config(bad_section)
    broken = tmp_path / "b.toml"
    broken.write_text("[train\nsteps = 3\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")


def test_command_line_literals():
    assert parse_literal("1e-3") == pytest.approx(1e-3)
    assert parse_literal("[1, 2, 2]") == [1, 2, 2]
    assert parse_literal("true") is True
    assert parse_literal("runs/x") == "runs/x"


def test_train_script_reports_config_errors_in_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/train_images.py"), "--config", str(REPO / "configs/smoke.toml"),
         "--train.lr", "-0.1", "--run.output_dir", str(tmp_path / "run")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: train.lr must be > 0, got -0.1"
    assert not (tmp_path / "run").exists()


def test_idx_files_load_scaled_and_padded(tmp_path):
    write_idx_mnist(tmp_path, n_train=40, n_test=20)
    data = load_image_data("mnist", tmp_path, train=True, download=False)
    assert data.images.shape == (40, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    x, y = data.batch(torch.tensor([0, 5]))
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1 and y.tolist() == [0, 5]
    padded = load_image_data("mnist", tmp_path, train=False, image_size=32, download=False)
    assert padded.images.shape == (20, 1, 32, 32)
    assert padded.images[:, :, :2].sum() == 0 and padded.images[:, :, -2:].sum() == 0  # background border
    assert torch.equal(padded.images[:, :, 2:30, 2:30], load_image_data("mnist", tmp_path, train=False, download=False).images)


def test_resize_and_shrink_rules():
    imgs = torch.full((2, 1, 28, 28), 200, dtype=torch.uint8)
    assert fit_size(imgs, 32, resize=True).shape == (2, 1, 32, 32)
    assert int(fit_size(imgs, 32, resize=True).float().mean()) == 200  # a constant image stays constant
    with pytest.raises(ValueError, match="set data.resize = true"):
        fit_size(imgs, 16, resize=False)


def test_missing_dataset_offline_names_the_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as info:
        load_image_data("fashion_mnist", tmp_path / "nothing", download=False)
    msg = str(info.value)
    assert "FashionMNIST/raw" in msg and "train-images-idx3-ubyte" in msg and "\n" not in msg


def test_corrupted_idx_file_is_reported(tmp_path):
    write_idx_mnist(tmp_path)
    (tmp_path / "MNIST/raw/train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(DatasetNotFoundError, match="could not be read"):
        load_image_data("mnist", tmp_path, download=False)


def test_batch_schedule_is_a_permutation_per_epoch_and_deterministic():
    sched = BatchSchedule(20, 6, seed=3)  # 3 batches per epoch, 2 items dropped
    epoch0 = torch.cat([sched.indices(k) for k in range(3)])
    assert epoch0.unique().numel() == 18
    again = BatchSchedule(20, 6, seed=3)
    assert torch.equal(again.indices(4), sched.indices(4))  # random access equals sequential
    assert not torch.equal(sched.indices(0), sched.indices(3))  # a new permutation next epoch
    with pytest.raises(ValueError, match="larger than the dataset"):
        BatchSchedule(4, 6, seed=0)


FLAT_0_2 = """
[data]
dataset = "folder"
path = "PICS"
channels = 1
fit = "pad"
cache_dir = ""
[model]
arch = "unet"
base_channels = 16
channel_mults = [1, 2, 4]
head_channels = 0
second_time = "interval"
time_scale = 50.0
embed_dim = 40
[flow]
objective = "mean_flow"
mean_flow_guidance = 1.5
mean_flow_time_std = 0.0
[sample]
solver = "flow_map"
num_steps = 1
"""

SECTIONED = """
[data]
dataset = "folder"
[data.folder]
path = "PICS"
channels = 1
fit = "pad"
[model]
arch = "unet"
[model.unet]
base_channels = 16
channel_mults = [1, 2, 4]
second_time = "interval"
time_scale = 50.0
[flow]
objective = "mean_flow"
[flow.mean_flow]
guidance = 1.5
time_std = 0.0
[sample]
solver = "flow_map"
num_steps = 1
"""


def test_a_flat_config_of_imgflow_0_2_loads_as_its_sectioned_equivalent_with_one_note(tmp_path, capsys):
    flat, sectioned = tmp_path / "flat.toml", tmp_path / "sectioned.toml"
    flat.write_text(FLAT_0_2)
    sectioned.write_text(SECTIONED)
    new = load_config(sectioned)
    assert capsys.readouterr().err == ""
    old = load_config(flat)
    err = capsys.readouterr().err.strip().splitlines()
    assert old.to_dict() == new.to_dict()
    assert len(err) == 1 and "earlier config layout" in err[0] and "model.base_channels -> model.unet.base_channels" in err[0]
    assert old.model.unet.head_channels is None and old.data.folder.cache_dir is None and old.flow.mean_flow.guidance == 1.5
    # flat keys on the command line move the same way
    cli = load_config(sectioned, {"model.base_channels": 8, "flow.mean_flow_guidance": 2.0})
    assert cli.model.unet.base_channels == 8 and cli.flow.mean_flow.guidance == 2.0
    # a section of an entry the config does not select is refused, naming the selector
    with pytest.raises(ConfigError, match=r"\[model.dit\] is set but model.arch = 'unet'"):
        load_config(sectioned, {"model.dit.depth": 2})
