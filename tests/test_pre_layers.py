"""Files written by main before the layers issue (25) still load, sample the same images and resume.

tests/fixtures/pre_layers holds tiny runs made by that code (tests/fixtures/pre_layers/make_fixtures.py says how): a
MeanFlow U-Net with dropout, a flow-matching DiT with logit-normal times (a key that has since moved), an autoencoder
and a latent DiT that carries it, a labelled and an unlabelled image-folder run (the latter's config asked for guidance
2, which that code ignored), the samples that code drew from each, and every shipped config of that commit with the
values it read from them. Sampling is a pure function of (weights, seed, sample index, settings), so the same numbers
come back; the tolerance covers float summation order on another machine (1e-5 against values of order 1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imgflow import Sampler
from imgflow.checkpoint import load_checkpoint
from imgflow.config import RunConfig, flatten_tables, load_config
from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images

FIXTURES = Path(__file__).parent / "fixtures" / "pre_layers"
EXPECTED = load_file(str(FIXTURES / "expected_samples.safetensors"))
TOL = 1e-5
RUNS = ("meanflow_unet", "dit_flow", "latent_dit", "folder_unet", "folder_unlabelled")


@pytest.mark.parametrize("name", RUNS)
def test_a_checkpoint_written_before_the_layers_issue_samples_the_same_images(name):
    sampler = Sampler.from_checkpoint(FIXTURES / f"{name}.safetensors", device="cpu")
    torch.testing.assert_close(sampler.sample(6, seed=3, clip=False).images, EXPECTED[f"{name}_default"], atol=TOL, rtol=0)
    if sampler.flow_map:
        torch.testing.assert_close(sampler.sample(6, seed=3, steps=2, clip=False).images, EXPECTED[f"{name}_2step"], atol=TOL, rtol=0)
    else:
        heun = sampler.sample(6, seed=5, solver="heun", steps=4, clip=False).images
        torch.testing.assert_close(heun, EXPECTED[f"{name}_heun4"], atol=TOL, rtol=0)
        em = sampler.sample(6, seed=5, solver="euler_maruyama", steps=8, sde_epsilon=0.5, clip=False).images
        torch.testing.assert_close(em, EXPECTED[f"{name}_em8"], atol=TOL, rtol=0)


def test_their_records_keep_what_they_were_trained_as():
    meanflow = Sampler.from_checkpoint(FIXTURES / "meanflow_unet.safetensors", device="cpu")
    assert meanflow.flow_map and meanflow.trained_guidance == 1.5 and meanflow.defaults.solver == "flow_map"
    latent = Sampler.from_checkpoint(FIXTURES / "latent_dit.safetensors", device="cpu")
    assert latent.codec is not None and latent.latent_spec.shape == (2, 4, 4) and latent.spec.shape == (1, 8, 8)
    assert latent.defaults.guidance == 2.0
    labelled = Sampler.from_checkpoint(FIXTURES / "folder_unet.safetensors", device="cpu")
    assert labelled.class_names == ("class_0", "class_1", "class_2")
    # the unlabelled run's config asked for guidance 2, which did nothing then and samples at 1 now
    flat = Sampler.from_checkpoint(FIXTURES / "folder_unlabelled.safetensors", device="cpu")
    assert not flat.conditional and flat.defaults.guidance == 1.0


@pytest.mark.parametrize("name", (*RUNS, "vae"))
def test_their_training_configs_read_strictly_and_round_trip(name):
    """Resuming reads a checkpoint's config strictly: the moved key (flow.time_sampling) lands in [flow.flow_matching],
    and keys that had no effect where it was written (data_root and download of a folder run) are dropped."""
    ckpt = load_checkpoint(FIXTURES / f"{name}.safetensors", read_tensors=False)
    cfg = ckpt.training_config()
    assert RunConfig.from_json(cfg.to_json()).to_dict() == cfg.to_dict()
    old = json.loads(ckpt.config_json)
    if name == "dit_flow":
        assert old["flow"]["time_sampling"] == "logit_normal" and cfg.flow.flow_matching.time_sampling == "logit_normal"
    if name.startswith("folder"):
        assert "data_root" in old["data"] and "data_root" not in cfg.to_dict()["data"]


def test_a_run_written_before_the_layers_issue_resumes_and_continues(tmp_path):
    """The DiT run trained on tensors (blob_images(32, 8)), so its data can be handed in again; its stored config
    compares equal to today's reading of it (the moved time sampling included) and training goes on from step 6."""
    run = tmp_path / "dit"
    run.mkdir()
    shutil.copy(FIXTURES / "dit_flow.safetensors", run / "ckpt-00000006.safetensors")
    (run / "latest").write_text("ckpt-00000006.safetensors")
    cfg = load_checkpoint(run).training_config()
    cfg.run.output_dir, cfg.train.steps = str(run), 8
    trainer = Trainer(cfg, resume="latest", data=blob_images(32, 8))
    assert trainer.step == 6
    result = trainer.run(progress=False)
    assert result.step == 8 and (run / "ckpt-00000008.safetensors").is_file()


CONFIGS = sorted((FIXTURES / "configs").glob("*.toml"))
READ_THEN = json.loads((FIXTURES / "configs_expected.json").read_text())
#: where the keys that moved in issue 25 live now: old 'section.key' -> new 'section.variant.key'
MOVED = {"flow.time_sampling": "flow.flow_matching.time_sampling", "flow.logit_normal_mean": "flow.flow_matching.logit_normal_mean",
         "flow.logit_normal_std": "flow.flow_matching.logit_normal_std"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_a_config_file_written_before_the_layers_issue_reads_the_values_it_read_then(path, capsys):
    """Every shipped config of that commit loads, with at most one note line, and every key that still has an effect
    has the value that code read (a moved key at its new place). Keys that had no effect then are the only ones that
    may be missing now (e.g. a velocity model's second_time), and they were at their defaults."""
    over = {"data.folder.path": "PICS"} if 'dataset = "folder"' in path.read_text() else {}
    cfg = load_config(path, over)
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) <= 1 and all("earlier config layout" in n for n in notes)
    then = dict(flatten_tables(READ_THEN[path.name]))
    now = dict(flatten_tables(json.loads(cfg.to_json())))
    for key, value in then.items():
        key_now = MOVED.get(key, key)
        if key_now.startswith("sample.") and key_now.split(".")[1] in ("sde_epsilon", "rtol", "atol"):
            continue  # a solver's own setting: kept only for the solver that reads it (none of these configs sets one)
        if key_now in now:
            assert now[key_now] == (list(value) if isinstance(value, tuple) else value), key
        else:
            assert value == default_of(key_now), f"{key} = {value!r} was dropped but is not its default"


def default_of(dotted: str):
    """The default of 'section.key' or 'section.variant.key' (JSON-like: tuples as lists)."""
    parts = dotted.split(".")
    obj = getattr(RunConfig(), parts[0])
    if len(parts) == 3:
        obj = obj.variant(parts[1])
    value = getattr(obj, parts[-1])
    return list(value) if isinstance(value, tuple) else value
