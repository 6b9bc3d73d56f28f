"""Hub-style model folders: a run saved as a folder samples the same images from a path, from a Hub cache with the
network off, and through the CLI; every broken folder is refused in one line naming the file and the problem."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from image_helpers import blob_images, tiny_config
from safetensors.torch import load_file, save_file

from imgflow import Sampler
from imgflow.cli import run
from imgflow.cli.export import main as export_main
from imgflow.cli.sample import main as sample_main
from imgflow.evaluation.report import EvalReport, GuidanceResult
from imgflow.model_card import CardScore
from imgflow.model_folder import is_model_folder
from imgflow.training.trainer import train

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny trained run, its sampler, and its samples (seed 3, 3 Euler steps)."""
    root = tmp_path_factory.mktemp("folders")
    cfg = tiny_config(root / "run", **{"train.steps": 2, "train.checkpoint_every": 2, "data.data_root": str(root / "nowhere")})
    train(cfg, data=blob_images(40), progress=False)
    sampler = Sampler.from_checkpoint(root / "run", device="cpu")
    return root, sampler, sampler.sample(6, steps=3, seed=3)


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_a_saved_folder_loads_back_by_path_with_identical_samples_and_a_card(trained, tmp_path):
    _, sampler, expected = trained
    score = CardScore("fid_clf", 12.5, "euler 3 steps, guidance 1", "600 samples judged by clf.safetensors", "test", "python x")
    folder = sampler.save_pretrained(tmp_path / "tiny-flow", scores=[score], license="mit", tags=["blobs"], config_name="smoke.toml")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert is_model_folder(folder) and not is_model_folder(trained[0] / "run")  # a run folder's config.json is no model folder
    loaded = Sampler.from_pretrained(folder)
    assert torch.equal(loaded.sample(6, steps=3, seed=3).images, expected.images)  # float32 kept: the same computation
    assert loaded.record == sampler.record and loaded.step == sampler.step
    config = json.loads((folder / "config.json").read_text())
    assert config["format_version"] == 1 and config["model_record"]["arch"] == "unet" and config["objective"] == "flow_matching"
    assert config["weights"]["dtype"] == "float32" and str(trained[0]) not in (folder / "config.json").read_text()  # no machine paths
    assert sorted(load_file(str(folder / "model.safetensors"))) == sorted(sampler.model.state_dict())  # the network's own names
    meta = front_matter((folder / "README.md").read_text())
    assert meta["library_name"] == "imgflow" and meta["license"] == "mit" and "blobs" in meta["tags"]
    assert meta["training_config"] == "smoke.toml"
    metric = meta["model-index"][0]["results"][0]["metrics"][0]
    assert (metric["type"], metric["value"]) == ("fid_clf", 12.5)
    assert "| euler 3 steps, guidance 1 | 12.5 |" in (folder / "README.md").read_text()
    # float16 halves the weights; the samples move by the rounding, not by a retrained amount
    half = sampler.save_pretrained(tmp_path / "half", dtype=torch.float16)
    assert "license" not in front_matter((half / "README.md").read_text())  # never a license the owner did not choose
    moved = (Sampler.from_pretrained(half).sample(6, steps=3, seed=3).images - expected.images).abs().max()
    assert 0 < moved < 2e-2
    assert (half / "model.safetensors").stat().st_size < 0.6 * (folder / "model.safetensors").stat().st_size


def test_an_existing_folder_is_kept_unless_overwrite(trained, tmp_path):
    _, sampler, _ = trained
    folder = sampler.save_pretrained(tmp_path / "m")
    before = (folder / "model.safetensors").read_bytes()
    with pytest.raises(ValueError, match="exists; choose another folder or pass overwrite=True"):
        sampler.save_pretrained(folder, dtype=torch.float16)
    assert (folder / "model.safetensors").read_bytes() == before
    sampler.save_pretrained(folder, dtype=torch.float16, overwrite=True)
    assert (folder / "model.safetensors").read_bytes() != before and not list(tmp_path.glob(".m.*"))  # no temporaries left


def test_a_repo_id_resolves_from_a_prefilled_hub_cache_with_the_network_off(trained, tmp_path):
    _, sampler, expected = trained
    folder = sampler.save_pretrained(tmp_path / "tiny-flow")
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-flow"
    shutil.copytree(folder, repo / "snapshots" / commit)  # huggingface_hub's cache layout (files may be plain copies)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    out = tmp_path / "from-hub.safetensors"
    script = (
        "import sys; from safetensors.torch import save_file; from imgflow import Sampler\n"
        "s = Sampler.from_pretrained('someone/tiny-flow', device='cpu')\n"
        f"save_file({{'x': s.sample(6, steps=3, seed=3).images}}, {str(out)!r})\n"
        "try:\n    Sampler.from_pretrained('someone/not-cached')\nexcept ValueError as e:\n    print(e)\n"
    )
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert torch.equal(load_file(str(out))["x"], expected.images)
    assert "'someone/not-cached' is not a local path" in done.stdout and "Hub cache" in done.stdout


def _damage(folder: Path, case: str) -> str:
    """Break a copy of a good folder one way; the fragment its error must contain."""
    config = folder / "config.json"
    raw = json.loads(config.read_text())
    if case == "missing folder":
        shutil.rmtree(folder)
        return "does not exist"
    if case == "no config.json":
        config.unlink()
        return "has no config.json"
    if case == "config.json not JSON":
        config.write_text(config.read_text()[:-20])
        return "config.json is not valid JSON"
    if case == "a diffusers config":
        config.write_text(json.dumps({"_class_name": "UNet2DModel", "sample_size": 8}))
        return "is not an imgflow model config"
    if case == "newer format":
        config.write_text(json.dumps({**raw, "format_version": 99, "imgflow_version": "9.0"}))
        return "format version 99, written by a newer imgflow"
    if case == "unknown backbone":
        raw["model_record"]["arch"] = "resnet9000"
        config.write_text(json.dumps(raw))
        return "names backbone 'resnet9000', which this version does not have"
    if case == "no weights":
        (folder / "model.safetensors").unlink()
        return "model.safetensors is missing: the model folder is partial"
    if case == "truncated weights":
        data = (folder / "model.safetensors").read_bytes()
        (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
        return "model.safetensors is not a readable safetensors file"
    if case == "replaced weights":
        weights = load_file(str(folder / "model.safetensors"))
        save_file({k: v + 1 for k, v in weights.items()}, str(folder / "model.safetensors"))
        return "is not the file"
    if case == "weights that do not fit the config":
        raw["model_record"]["options"]["base_channels"] = 4
        config.write_text(json.dumps(raw))
        return "does not fit the model"
    raise AssertionError(case)


CASES = ["missing folder", "no config.json", "config.json not JSON", "a diffusers config", "newer format", "unknown backbone",
         "no weights", "truncated weights", "replaced weights", "weights that do not fit the config"]


@pytest.mark.parametrize("case", CASES)
def test_a_broken_folder_is_refused_in_one_line_naming_the_file(trained, tmp_path, capsys, case):
    _, sampler, _ = trained
    folder = sampler.save_pretrained(tmp_path / "model")
    expected = _damage(folder, case)
    assert run(sample_main, [str(folder), "--out", str(tmp_path / "grid.png"), "--num", "2", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err and str(folder) in err, err
    assert not (tmp_path / "grid.png").exists()


def test_the_cli_exports_a_run_with_the_scores_evaluate_measured(trained, tmp_path, capsys):
    root, sampler, _ = trained
    report = EvalReport(str(root / "run"), 2, "ema", "mnist", 8, True, sampler.defaults, {"path": "clf.safetensors", "test_accuracy": 0.99},
                        {"split": "test", "num_images": 32, "cached": False}, 100, 0,
                        [GuidanceResult(1.0, 41.25, 0.625, None, 100, 4, 1.0, 0), GuidanceResult(2.0, 50.5, 0.75, None, 100, 4, 1.0, 0)],
                        fid_real_train_images=3.5)
    (tmp_path / "eval.json").write_text(json.dumps(report.to_dict()))
    out = tmp_path / "shared"
    assert run(export_main, [str(root / "run"), "--out", str(out), "--scores", str(tmp_path / "eval.json"), "--license", "cc-by-4.0"]) == 0
    card = (out / "README.md").read_text()
    metrics = front_matter(card)["model-index"][0]["results"][0]["metrics"]
    assert [(m["type"], m["value"]) for m in metrics] == [("fid_clf", 41.25), ("accuracy", 62.5), ("fid_clf", 50.5), ("accuracy", 75.0)]
    assert "guidance 2" in metrics[2]["name"] and "real training images score 3.500" in metrics[0]["config"]
    assert json.loads((out / "config.json").read_text())["weights"]["dtype"] == "float16"  # the CLI's default: half the size
    assert "wrote" in capsys.readouterr().out
    # bad inputs: one line, exit 2, the folder written before untouched
    before = (out / "model.safetensors").read_bytes()
    for argv, fragment in [([str(root / "run"), "--out", str(out)], "exists"),
                           ([str(root / "run"), "--out", str(tmp_path / "x.safetensors")], "exported as a model folder"),
                           ([str(root / "run"), "--name", "nope"], "is not a shipped model"),
                           ([str(root / "run"), "--out", str(tmp_path / "y"), "--scores", str(tmp_path / "none.json")], "--scores"),
                           ([str(root / "run"), "--out", str(tmp_path / "missing" / "z")], "does not exist")]:
        assert run(export_main, argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and fragment in err, (argv, err)
    assert (out / "model.safetensors").read_bytes() == before


def test_shipped_models_are_model_folders_whose_cards_hold_the_registrys_scores():
    from imgflow.pretrained import PRETRAINED

    for entry in (e for e in PRETRAINED.values() if e.kind == "sampler"):
        assert sorted(p.name for p in entry.path.iterdir()) == ["README.md", "config.json", "model.safetensors"]
        meta = front_matter((entry.path / "README.md").read_text())
        values = [m["value"] for m in meta["model-index"][0]["results"][0]["metrics"] if m["type"] == "fid_clf"]
        assert values == [s.fid for s in entry.scores] and meta["training_config"] == entry.config
