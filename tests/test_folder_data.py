"""Training on a folder of your own images: formats and modes, crop/pad, the cache, splits, bad input, resume rules."""

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgflow import Sampler
from imgflow.checkpoint import CheckpointError
from imgflow.cli import run
from imgflow.cli.sample import main as sample_main
from imgflow.cli.train import main as train_main
from imgflow.config import ConfigError, load_config
from imgflow.data import ImageData, export_image_folder, load_dataset, scan_folder
from imgflow.data import folder as folder_module
from imgflow.data.folder import convert_image, in_holdout
from imgflow.training.metrics_log import read_metrics
from imgflow.training.trainer import Trainer, train
from tests.image_helpers import blob_images

PALETTE_RED = (200, 30, 30)


def write_pets(root: Path, per_class: int = 10) -> Path:
    """Three class folders (sorted: bird, cat, dog) in every supported format and colour mode, of odd sizes."""
    rng = np.random.default_rng(0)
    for c, cls in enumerate(("cat", "dog", "bird")):
        folder = root / cls / ("nested" if cls == "bird" else "")
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            kind = (c * per_class + i) % 5
            rgb = rng.integers(0, 256, (18 + i, 26, 3), dtype=np.uint8)
            if kind == 0:
                Image.fromarray(rgb).save(folder / f"{i:02d}.png")
            elif kind == 1:
                Image.fromarray(rgb).save(folder / f"{i:02d}.jpg", quality=90)
            elif kind == 2:
                Image.fromarray(rgb[..., 0]).save(folder / f"{i:02d}.webp")  # grey
            elif kind == 3:
                Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 128, np.uint8)])).save(folder / f"{i:02d}.PNG")  # RGBA
            else:
                Image.fromarray(rgb).convert("P").save(folder / f"{i:02d}.bmp")  # palette
    (root / "cat" / "readme.txt").write_text("not an image")
    (root / "dog" / "labels.csv").write_text("1,2")
    (root / ".DS_Store").write_bytes(b"\0")
    return root


def folder_cfg(tmp_path, path, **overrides):
    base = {
        "data.dataset": "folder", "data.folder.path": str(path), "data.image_size": 8, "data.folder.cache_dir": str(tmp_path / "cache"),
        "data.folder.holdout_fraction": 0.2, "run.output_dir": str(tmp_path / "run"), "model.unet.base_channels": 8,
        "model.unet.channel_mults": [1, 2], "model.unet.attention_resolutions": [4], "model.unet.num_heads": 2, "train.steps": 4,
        "train.batch_size": 4, "train.log_every": 2, "train.checkpoint_every": 2, "train.sample_every": 0, "train.warmup_steps": 1,
        "sample.num_steps": 2, "sample.num_images": 6,
    }
    base.update(overrides)
    return load_config(None, base)


def test_a_class_per_folder_tree_loads_every_format_with_labels_by_sorted_folder_name(tmp_path):
    pets = write_pets(tmp_path / "pets")
    scan = scan_folder(pets)
    assert scan.class_names == ("bird", "cat", "dog") and len(scan.files) == 30
    assert scan.ignored == 2  # readme.txt and labels.csv; hidden files are not counted
    assert scan.files[0].startswith("bird/nested/") and scan.labels[:10] == [0] * 10 and scan.labels[-1] == 2
    cfg = folder_cfg(tmp_path, pets)
    train_split, test_split = load_dataset(cfg.data, "train"), load_dataset(cfg.data, "test")
    assert len(train_split) + len(test_split) == 30 and len(test_split) > 0
    assert train_split.images.shape[1:] == (3, 8, 8) and train_split.images.dtype == torch.uint8
    assert train_split.spec.class_names == ("bird", "cat", "dog") and train_split.spec.fingerprint == scan.fingerprint
    # the split is a pure function of each file's relative path
    held = {rel for rel in scan.files if in_holdout(rel, 0.2)}
    assert len(held) == len(test_split)
    grey = load_dataset(folder_cfg(tmp_path, pets, **{"data.folder.channels": 1}).data, "train")
    assert grey.images.shape[1:] == (1, 8, 8)


def test_crop_keeps_the_centre_and_pad_keeps_the_whole_image(tmp_path):
    wide = np.zeros((20, 60, 3), np.uint8)
    wide[:, 20:40] = 255  # a white middle third
    Image.fromarray(wide).save(tmp_path / "wide.png")
    cropped = convert_image(tmp_path / "wide.png", 10, 3, "crop")
    padded = convert_image(tmp_path / "wide.png", 12, 1, "pad")
    assert cropped.shape == (3, 10, 10) and cropped.min() > 200  # the centre square is all white
    assert padded.shape == (1, 12, 12)
    assert padded[0, :4].max() == 0 and padded[0, -4:].max() == 0  # black bars above and below (the image is 12 x 4)
    assert padded[0, 4:8, 4:8].min() > 200 and padded[0, 4:8, 0].max() < 60  # white centre, black left third
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = 255, 0  # fully transparent white
    Image.fromarray(rgba).save(tmp_path / "clear.png")
    assert convert_image(tmp_path / "clear.png", 8, 3, "crop").max() == 0  # composited onto black


def cache_folders(root: Path) -> list[Path]:
    """The caches in a cache root (their hidden lock files aside)."""
    return [p for p in root.iterdir() if not p.name.startswith(".")]


def test_the_cache_is_reused_rebuilt_on_any_change_and_never_trusted_when_broken(tmp_path, monkeypatch):
    pets = write_pets(tmp_path / "pets")
    cfg = folder_cfg(tmp_path, pets)
    calls = []
    original = folder_module.convert_image
    monkeypatch.setattr(folder_module, "convert_image", lambda *a: calls.append(a[0]) or original(*a))
    first = load_dataset(cfg.data)
    assert len(calls) == 30
    again = load_dataset(cfg.data)
    assert len(calls) == 30 and torch.equal(first.images, again.images)  # second start: nothing converted
    # a modified file (new mtime) is another dataset: rebuilt, and the superseded cache removed
    target = pets / "cat" / "00.png"
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 10**9))
    load_dataset(cfg.data)
    assert len(calls) == 60 and len(cache_folders(tmp_path / "cache")) == 1
    # another transform is another cache; both live
    load_dataset(folder_cfg(tmp_path, pets, **{"data.folder.fit": "pad"}).data)
    assert len(calls) == 90 and len(cache_folders(tmp_path / "cache")) == 2
    cache = Path(load_dataset(cfg.data).info["cache"])
    assert len(calls) == 90
    # a truncated data file, or a cache from another format version, is rebuilt
    with open(cache / "images.u8", "r+b") as fh:
        fh.truncate(100)
    load_dataset(cfg.data)
    assert len(calls) == 120
    meta = json.loads((cache / "meta.json").read_text())
    meta["format"] = "imgflow-folder-cache-0"
    (cache / "meta.json").write_text(json.dumps(meta))
    load_dataset(cfg.data)
    assert len(calls) == 150


def test_a_flat_folder_trains_an_unconditional_model(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    rng = np.random.default_rng(1)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8)).save(flat / f"{i}.png")
    cfg = folder_cfg(tmp_path, flat, **{"data.folder.channels": 1, "sample.guidance_scale": 1.0})
    result = train(cfg, progress=False)
    assert result.step == 4
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    assert not sampler.conditional and sampler.spec.num_classes == 0 and sampler.image_shape == (1, 8, 8)
    assert sampler.sample(3, steps=2).images.shape == (3, 1, 8, 8)
    with pytest.raises(ConfigError, match="unconditional"):
        sampler.sample(3, labels=["cat"])


def write_bad_cases(root: Path) -> dict[str, Path]:
    cases = {}
    cases["empty"] = root / "empty"
    cases["empty"].mkdir(parents=True)
    cases["only_text"] = root / "only_text"
    cases["only_text"].mkdir()
    (cases["only_text"] / "a.txt").write_text("x")
    cases["empty_class"] = write_pets(root / "empty_class", per_class=2)
    (cases["empty_class"] / "zebra").mkdir()
    (cases["empty_class"] / "zebra" / "notes.md").write_text("todo")
    cases["mixed"] = write_pets(root / "mixed", per_class=2)
    Image.new("RGB", (9, 9)).save(cases["mixed"] / "loose.png")
    cases["truncated"] = write_pets(root / "truncated", per_class=4)
    good = (cases["truncated"] / "cat" / "00.png").read_bytes()
    (cases["truncated"] / "cat" / "zz-broken.png").write_bytes(good[: len(good) // 3])
    (cases["truncated"] / "dog" / "zz-text.jpg").write_text("this is not a jpeg")
    return cases


@pytest.mark.parametrize(
    "case,message",
    [
        ("missing", "data.folder.path {root}/nowhere does not exist; set it to the folder that holds your images"),
        ("empty", "{root}/empty holds no images (0 other files ignored); supported: .png, .jpg, .jpeg, .webp, .bmp"),
        ("only_text", "{root}/only_text holds no images (1 other files ignored)"),
        ("empty_class", "class folder {root}/empty_class/zebra has no images"),
        ("mixed", "holds both images (loose.png, ...) and class sub-folders"),
        ("truncated", "cannot read image {root}/truncated/cat/zz-broken.png ("),
    ],
)
def test_bad_folders_are_one_line_naming_the_path_and_write_nothing(tmp_path, capsys, case, message):
    root = tmp_path / "cases"
    cases = write_bad_cases(root)
    path = cases.get(case, root / "nowhere")
    argv = ["--data.dataset", "folder", "--data.folder.path", str(path), "--data.folder.cache_dir", str(tmp_path / "cache"),
            "--run.output_dir", str(tmp_path / "run"), "--data.image_size", "8", "--model.unet.attention_resolutions", "[]", "--no-progress"]
    code = run(train_main, argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), lines
    assert message.format(root=root) in lines[0], lines[0]
    assert not (tmp_path / "run").exists()
    assert not any(p.is_dir() for p in (tmp_path / "cache").glob("*")) if (tmp_path / "cache").exists() else True


def test_unreadable_images_can_be_skipped_and_are_counted(tmp_path):
    cases = write_bad_cases(tmp_path / "cases")
    cfg = folder_cfg(tmp_path, cases["truncated"], **{"data.folder.skip_bad_images": True, "data.folder.holdout_fraction": 0.0})
    data = load_dataset(cfg.data)
    assert len(data) == 12 and data.info["skipped_bad_images"] == 2 and data.info["ignored_files"] == 2


def test_folder_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="data.dataset = 'folder' needs data.folder.path"):
        load_config(None, {"data.dataset": "folder"})
    with pytest.raises(ConfigError, match="data.folder.channels must be 1 .grey. or 3 .RGB."):
        load_config(None, {"data.dataset": "folder", "data.folder.path": "x", "data.folder.channels": 2})
    with pytest.raises(ConfigError, match="data.folder.holdout_fraction must be in"):
        load_config(None, {"data.dataset": "folder", "data.folder.path": "x", "data.folder.holdout_fraction": 1.0})
    with pytest.raises(ConfigError, match=r"data.folder.fit = 'stretch' is not one of: crop, pad"):
        load_config(None, {"data.dataset": "folder", "data.folder.path": "x", "data.folder.fit": "stretch"})
    pets = write_pets(tmp_path / "pets", per_class=4)
    with pytest.raises(ConfigError, match=r"image_size 30 is not divisible by 2\*\*2 = 4 .* or pad the images to 32"):
        Trainer(folder_cfg(tmp_path, pets, **{"data.image_size": 30, "model.unet.channel_mults": [1, 2, 2], "model.unet.attention_resolutions": []}))
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()  # refused before any image was read


def test_resume_is_refused_when_the_folder_changed_and_exact_when_it_did_not(tmp_path):
    pets = write_pets(tmp_path / "pets", per_class=6)
    cfg = folder_cfg(tmp_path, pets, **{"train.steps": 6, "train.checkpoint_every": 3})
    full = Trainer(folder_cfg(tmp_path, pets, **{"train.steps": 6, "run.output_dir": str(tmp_path / "full")}))
    full.run(progress=False)
    Trainer(folder_cfg(tmp_path, pets, **{"train.steps": 3})).run(progress=False)
    Image.new("RGB", (20, 20), PALETTE_RED).save(pets / "cat" / "new.png")
    with pytest.raises(CheckpointError, match=f"the images under {pets} changed since the run started"):
        Trainer(cfg, resume="latest")
    (pets / "cat" / "new.png").unlink()
    resumed = Trainer(cfg, resume="latest")
    resumed.run(progress=False)
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_a_memory_mapped_dataset_trains_exactly_like_a_resident_one(tmp_path, monkeypatch):
    """The larger-than-memory path (batches gathered from the map on the CPU) gives the same run as in-memory data."""
    pets = write_pets(tmp_path / "pets", per_class=6)
    resident = Trainer(folder_cfg(tmp_path, pets, **{"run.output_dir": str(tmp_path / "a")}))
    assert resident.data.resident
    resident.run(progress=False)
    monkeypatch.setattr(folder_module, "RESIDENT_BYTES", 0)
    mapped = Trainer(folder_cfg(tmp_path, pets, **{"run.output_dir": str(tmp_path / "b")}))
    assert not mapped.data.resident and isinstance(mapped.data.images.untyped_storage().data_ptr(), int)
    mapped.run(progress=False)
    assert [m["loss"] for m in read_metrics(tmp_path / "a")] == [m["loss"] for m in read_metrics(tmp_path / "b")]
    for k, v in resident.model.state_dict().items():
        assert torch.equal(v, mapped.model.state_dict()[k]), k


def test_an_exported_dataset_trains_identically_from_its_folder(tmp_path):
    """The folder path and in-memory tensors of the same pixels give the same loss curve (the parity check, small)."""
    blobs = blob_images(40, size=8)
    names = tuple(f"shape {k}" for k in range(10))
    data = ImageData(blobs.images, blobs.labels, blobs.spec.__class__("tensors", 1, 8, names))
    export_image_folder(data, tmp_path / "exported")
    assert sorted(p.name for p in (tmp_path / "exported").iterdir())[:2] == ["0-shape_0", "1-shape_1"]
    cfg = folder_cfg(tmp_path, tmp_path / "exported", **{"data.folder.channels": 1, "data.folder.holdout_fraction": 0.0, "train.steps": 6,
                                                         "run.output_dir": str(tmp_path / "from_folder")})
    folder_data = load_dataset(cfg.data)
    order = torch.sort(data.labels, stable=True).indices  # a class-per-folder tree lists the images class by class
    assert torch.equal(folder_data.images, data.images[order]) and torch.equal(folder_data.labels, data.labels[order])
    train(cfg, progress=False)
    in_memory = ImageData(data.images[order], data.labels[order], folder_data.spec)
    train(folder_cfg(tmp_path, "unused", **{"data.folder.channels": 1, "data.folder.holdout_fraction": 0.0, "train.steps": 6,
                                            "run.output_dir": str(tmp_path / "from_tensors")}), data=in_memory, progress=False)
    a, b = read_metrics(tmp_path / "from_folder"), read_metrics(tmp_path / "from_tensors")
    assert [m["loss"] for m in a] == [m["loss"] for m in b] and len(a) == 3


def test_the_command_lines_train_on_a_folder_and_sample_by_class_name(tmp_path, capsys):
    pets = write_pets(tmp_path / "pets", per_class=6)
    argv = ["--data.dataset", "folder", "--data.folder.path", str(pets), "--data.folder.cache_dir", str(tmp_path / "cache"), "--data.image_size", "8",
            "--model.unet.base_channels", "8", "--model.unet.channel_mults", "[1, 2]", "--model.unet.attention_resolutions", "[4]",
            "--train.steps", "2", "--train.batch_size", "4", "--train.sample_every", "0", "--run.output_dir", str(tmp_path / "run"),
            "--no-progress"]
    assert run(train_main, argv) == 0
    out = capsys.readouterr().out
    assert "2 classes" not in out and "3 classes" in out and "non-image files ignored" in out
    grid = tmp_path / "grid.png"
    assert run(sample_main, [str(tmp_path / "run"), "--out", str(grid), "--num", "6", "--classes", "dog,bird", "--steps", "2"]) == 0
    assert Image.open(grid).size == (2 * 10 + 2, 3 * 10 + 2)  # two classes: two columns
    assert run(sample_main, [str(tmp_path / "run"), "--out", str(grid), "--classes", "zebra"]) == 2
    assert "unknown class 'zebra'; the folder classes are bird, cat, dog" in capsys.readouterr().err


def test_the_classifier_and_evaluation_work_on_a_folder_against_its_held_out_split(tmp_path):
    from imgflow.evaluation import NLLSettings, evaluate_checkpoint, load_classifier
    from imgflow.evaluation.classifier import fit_classifier

    pets = write_pets(tmp_path / "pets", per_class=10)
    cfg = folder_cfg(tmp_path, pets, **{"data.folder.holdout_fraction": 0.3})
    train(cfg, progress=False)
    held_out = load_dataset(cfg.data, "test")
    _, path = fit_classifier(cfg.data, tmp_path / "pets-clf.safetensors", epochs=1, batch_size=8)
    _, info = load_classifier(path)
    assert info.class_names == ("bird", "cat", "dog") and info.identity["dataset"] == "folder"
    assert info.identity["fingerprint"] == held_out.spec.fingerprint and info.arch.in_channels == 3
    report = evaluate_checkpoint(tmp_path / "run", path, num=12, steps=2, cache_dir=tmp_path / "stats",
                                 nll=NLLSettings(images=0))
    assert report.reference["split"] == "test" and report.reference["num_images"] == len(held_out) > 0
    assert report.results[0].num_samples == 12 and len(report.results[0].per_class_accuracy) == 3
