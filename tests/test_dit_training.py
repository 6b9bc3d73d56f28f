"""The DiT backbone through the whole pipeline: a config section, training, every objective, checkpoints, sampling
(the network itself: tests/test_nn_dit.py)."""

import pytest
import torch

from imgflow import Sampler
from imgflow.config import ConfigError
from imgflow.nn.dit import DiT
from imgflow.training.metrics_log import read_metrics
from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images, tiny_config

DIT = {"model.arch": "dit", "model.dit.patch_size": 2, "model.dit.hidden_size": 32, "model.dit.depth": 2, "model.dit.num_heads": 2}


@pytest.mark.parametrize("objective", ["flow_matching", "noise", "mean_flow"])
def test_dit_trains_with_every_objective_and_samples_from_its_checkpoint(tmp_path, objective):
    extra = {"flow.objective": "mean_flow", "sample.solver": "flow_map", "sample.num_steps": 1} if objective == "mean_flow" else {}
    if objective == "noise":
        extra = {"flow.prediction": "noise", "flow.schedule": "cosine"}
    cfg = tiny_config(tmp_path / "run", **DIT, **extra, **{"train.steps": 12, "train.checkpoint_every": 12, "train.lr": 3e-3})
    Trainer(cfg, data=blob_images(64)).run(progress=False)
    losses = [m["loss"] for m in read_metrics(tmp_path / "run")]
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]  # 12 steps on blobs: the loss falls
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    assert isinstance(sampler.model, DiT) and sampler.flow_map == (objective == "mean_flow")
    samples = sampler.sample(6, labels=[2, 5])
    assert samples.images.shape == (6, 1, 8, 8) and torch.isfinite(samples.images).all()
    assert samples.nfe == (1 if objective == "mean_flow" else 4)


def test_dit_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"\[model.dit\] hidden_size 30 must be divisible by num_heads \(4\) and by 4"):
        tiny_config(tmp_path, **{**DIT, "model.dit.hidden_size": 30, "model.dit.num_heads": 4})
    with pytest.raises(ConfigError, match="image_size 8 is not divisible by patch_size 3"):
        Trainer(tiny_config(tmp_path / "p3", **{**DIT, "model.dit.patch_size": 3}), data=blob_images(16))
