"""The DiT backbone through the whole pipeline: a config section, training, every objective, checkpoints, sampling."""

import pytest
import torch

from imgflow import Sampler
from imgflow.config import ConfigError
from imgflow.nn.dit import DiT, dit_flops
from imgflow.training.metrics_log import read_metrics
from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images, tiny_config

DIT = {"model.arch": "dit", "model.dit.patch_size": 2, "model.dit.hidden_size": 32, "model.dit.depth": 2, "model.dit.num_heads": 2}


def test_dit_size_and_cost_match_the_paper():
    """DiT-S/2 and DiT-B/2 on ImageNet-256 latents (4 x 32 x 32, 1000 classes): the paper's Table 4 says 33 M / 6.06 GFLOPs
    and 130 M / 23.01 GFLOPs (multiply-adds). Ours have no learned-sigma output channels, so slightly fewer parameters."""
    small = DiT(in_channels=4, image_size=32, patch_size=2, hidden_size=384, depth=12, num_heads=6, num_classes=1000)
    assert abs(small.num_parameters() / 33e6 - 1) < 0.02 and abs(small.flops_per_image() / 6.06e9 - 1) < 0.01
    base = dit_flops(in_channels=4, out_channels=4, image_size=32, patch_size=2, hidden_size=768, depth=12)
    assert abs(base / 23.01e9 - 1) < 0.01


def test_an_untrained_dit_outputs_zero_and_conditions_on_time_class_and_second_time():
    torch.manual_seed(0)
    net = DiT(in_channels=1, image_size=8, patch_size=2, hidden_size=32, depth=2, num_heads=2, num_classes=3, flow_map=True)
    x, t, y = torch.randn(2, 1, 8, 8), torch.rand(2), torch.tensor([0, 1])
    assert torch.equal(net(x, t, y), torch.zeros_like(x))  # adaLN-Zero and the zero final layer
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    out = net(x, t, y)
    assert not torch.allclose(out, net(x, 1 - t, y)) and not torch.allclose(out, net(x, t, torch.tensor([2, 2])))
    assert torch.equal(net(x, t), net(x, t, torch.tensor([3, 3])))  # y = None is the null label 3
    assert torch.equal(out, net(x, t, y, r=t)) and not torch.allclose(out, net(x, t, y, r=torch.ones(2)))
    assert "pos_embed" not in net.state_dict()  # fixed, recomputed at construction
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 1, 8, 8\)"):
        net(torch.randn(2, 1, 6, 6), t)


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
