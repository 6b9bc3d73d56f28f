"""The models shipped in the package sample recognisable digits with no training, and export writes such files."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open

from imgflow import Sampler
from imgflow.checkpoint import load_checkpoint
from imgflow.config import ConfigError
from imgflow.evaluation.classifier import load_classifier, predict
from imgflow.export import export_pretrained
from imgflow.pretrained import PRETRAINED, pretrained_path
from imgflow.training.trainer import train
from tests.image_helpers import blob_images, tiny_config


@pytest.fixture(scope="module")
def classifier():
    model, info = load_classifier(pretrained_path("mnist-classifier"))
    assert info.test_accuracy > 0.99 and len(info.class_names) == 10
    return model


def class_accuracy(classifier, samples) -> float:
    return float((predict(classifier, samples.images) == samples.labels).float().mean())


def test_shipped_flow_matching_model_draws_digits_the_classifier_recognises(classifier):
    sampler = Sampler.from_pretrained("mnist")
    assert sampler.class_names[:2] == ("0 - zero", "1 - one") and sampler.defaults.solver == "euler"
    samples = sampler.sample(50, steps=8, guidance=1.0, seed=0)   # 5 per class, 8 Euler steps, unguided
    # a trained model scores ~97 % here; an untrained or wrongly loaded one ~10 %; 50 samples put
    # one binomial sigma at ~2.4 % near 97 %, so 0.85 leaves 5 sigma of room
    assert class_accuracy(classifier, samples) >= 0.85
    assert samples.images.std() > 0.5  # digits, not a grey blur: strokes at -1 and +1


def test_shipped_meanflow_model_draws_digits_in_one_step(classifier):
    sampler = Sampler.from_pretrained("mnist-meanflow")
    assert sampler.flow_map and sampler.defaults.nfe == 1
    samples = sampler.sample(100, seed=0)
    assert samples.nfe == 1 and class_accuracy(classifier, samples) >= 0.8


def test_shipped_distilled_model_draws_digits_in_two_steps_and_names_its_teacher_portably(classifier):
    import json

    sampler = Sampler.from_pretrained("mnist-distill")
    assert sampler.flow_map and sampler.defaults.nfe == 2 and sampler.trained_guidance == 1.0
    samples = sampler.sample(100, seed=0)
    # 95.5 % on 1,000 samples; 100 samples put one binomial sigma at ~2.1 %, so 0.85 leaves 5 sigma
    assert samples.nfe == 2 and class_accuracy(classifier, samples) >= 0.85
    config = json.loads(load_checkpoint(pretrained_path("mnist-distill")).config_json)
    assert config["flow"]["mean_flow_distillation"]["teacher"] == "mnist"  # not the machine path it was trained with


@pytest.mark.parametrize("name", list(PRETRAINED))
def test_shipped_models_are_small_float16_ema_only(name):
    path = pretrained_path(name)
    file = path / "model.safetensors" if path.is_dir() else path  # a sampler is a model folder, the classifier one file
    assert file.stat().st_size < 2_000_000, f"{file} is {file.stat().st_size} bytes"
    with safe_open(str(file), framework="pt") as fh:
        dtypes = {fh.get_tensor(k).dtype for k in fh.keys() if fh.get_tensor(k).is_floating_point()}  # noqa: SIM118
    assert dtypes == {torch.float16}
    if PRETRAINED[name].kind == "sampler":
        ckpt = load_checkpoint(path)
        assert ckpt.weight_choices == ("ema",) and ckpt.optimizer is None


def test_unknown_names_and_kinds_are_refused_with_the_list():
    with pytest.raises(ConfigError, match="'cifar' does not exist.*a shipped model \\(mnist, mnist-meanflow, mnist-distill\\) or a Hub"):
        Sampler.from_pretrained("cifar")
    with pytest.raises(ConfigError, match="'mnist-classifier' is the shipped classifier, not a flow model"):
        Sampler.from_pretrained("mnist-classifier")


def test_export_keeps_the_samples_to_float16_precision_and_drops_the_rest(tmp_path):
    cfg = tiny_config(tmp_path / "run", **{"train.steps": 2, "train.checkpoint_every": 2, "data.data_root": str(tmp_path / "nowhere")})
    train(cfg, data=blob_images(40), progress=False)
    out = export_pretrained(tmp_path / "run", tmp_path / "small")
    original = Sampler.from_checkpoint(tmp_path / "run").sample(8, steps=3, seed=2)
    exported = Sampler.from_pretrained(out).sample(8, steps=3, seed=2)
    # float16 keeps ~3 significant digits of each weight: the samples move by ~1e-3, not by a retrained amount
    assert (original.images - exported.images).abs().max() < 2e-2 and not torch.equal(original.images, exported.images)
    ckpt = load_checkpoint(out)
    assert ckpt.optimizer is None and not ckpt.model and ckpt.config.data.data_root == "data"
    assert ckpt.config.run.output_dir.startswith("runs/") and str(tmp_path) not in ckpt.config_json


def test_statistics_for_the_shipped_classifier_go_to_the_user_cache(tmp_path, monkeypatch):
    from imgflow.evaluation.fid import stats_cache_path

    monkeypatch.setenv("IMGFLOW_CACHE", str(tmp_path / "cache"))
    identity = {"dataset": "mnist", "image_size": "28"}
    shipped = stats_cache_path(pretrained_path("mnist-classifier"), identity, "test")
    assert shipped.parent == tmp_path / "cache" / "fid"  # never inside the installed package
    own = tmp_path / "clf" / "mine.safetensors"
    own.parent.mkdir()
    own.write_bytes(b"x")
    assert stats_cache_path(own, identity, "test").parent == own.parent  # a classifier of one's own keeps them beside it


def test_the_faq_table_is_the_registrys_scores_and_says_what_was_chosen_on_the_test_split():
    """docs/faq.md shows `scores_table()` verbatim, so the scores live in one place (imgflow.pretrained.PRETRAINED)."""
    from pathlib import Path

    from imgflow.pretrained import PRETRAINED, scores_table

    faq = (Path(__file__).resolve().parents[1] / "docs" / "faq.md").read_text()
    assert scores_table() in faq
    assert all(entry.scores and entry.chosen_on for entry in PRETRAINED.values())
    assert "test split" in PRETRAINED["mnist-meanflow"].chosen_on
