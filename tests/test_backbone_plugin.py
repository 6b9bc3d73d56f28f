"""A backbone defined here, in the test file, trains, resumes and samples through the public API with no other change.

This is the contract of imgflow.nn.backbones: one options dataclass (whose `validate(image_size=None)` is its one
validation), one builder, one `register_backbone` line.
"""

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from imgflow import Sampler
from imgflow.checkpoint import load_checkpoint
from imgflow.config import ConfigError, load_config
from imgflow.nn.backbones import Backbone, BuiltFor, register_backbone, unregister_backbone
from imgflow.nn.conditioning import Conditioning
from imgflow.training.trainer import Trainer
from tests.image_helpers import blob_images


@dataclass
class TinyOptions:
    width: int = 16
    scale: float = 1.0

    def validate(self, image_size: int | None = None) -> None:
        if self.width < 2:
            raise ValueError(f"width must be >= 2, got {self.width}")
        if image_size is not None and image_size > 64:
            raise ValueError(f"the tiny backbone takes images up to 64 px, not {image_size}")


class TinyNet(nn.Module):
    """x -> conv -> + c(t, r, y) -> conv: the smallest network that uses the shared conditioning."""

    def __init__(self, options: TinyOptions, built_for: BuiltFor) -> None:
        super().__init__()
        self.cond = Conditioning(options.width, time_scale=50.0, num_classes=built_for.num_classes, flow_map=built_for.flow_map)
        self.inp = nn.Conv2d(built_for.channels, options.width, 3, padding=1)
        self.out = nn.Conv2d(options.width, built_for.channels, 3, padding=1)
        self.scale = options.scale

    def forward(self, x, t, y=None, r=None):
        c = self.cond(t, y, x.shape[0], x.device, r)
        return self.scale * self.out(torch.nn.functional.silu(self.inp(x) + c[:, :, None, None]))


@pytest.fixture
def tiny_backbone():
    register_backbone(Backbone("tiny_test_net", TinyOptions, TinyNet, flow_map=True))
    yield
    unregister_backbone("tiny_test_net")


def config(out, **extra):
    return load_config(None, {
        "run.output_dir": str(out), "data.image_size": 8, "data.download": False,
        "model.arch": "tiny_test_net", "model.tiny_test_net.width": 12,
        "train.steps": 6, "train.batch_size": 8, "train.lr": 3e-3, "train.warmup_steps": 0, "train.ema_decay": 0.9,
        "train.log_every": 2, "train.sample_every": 0, "train.checkpoint_every": 3, "sample.num_steps": 3, **extra})


def test_a_backbone_defined_in_a_test_trains_resumes_and_samples(tiny_backbone, tmp_path):
    data = blob_images(32)
    straight = Trainer(config(tmp_path / "a"), data=data)
    straight.run(progress=False)
    first = Trainer(config(tmp_path / "b", **{"train.steps": 3}), data=data)
    first.run(progress=False)
    resumed = Trainer(config(tmp_path / "b"), resume="latest", data=data)
    resumed.run(progress=False)
    for (name, a), (_, b) in zip(straight.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.equal(a, b), name  # bit-exact resume holds for a plug-in too
    ckpt = load_checkpoint(tmp_path / "b")
    assert ckpt.record.arch == "tiny_test_net" and ckpt.record.options == {"width": 12, "scale": 1.0}
    sampler = Sampler.from_checkpoint(tmp_path / "b", device="cpu")
    assert isinstance(sampler.model, TinyNet) and sampler.model.cond.null_label == 10
    samples = sampler.sample(6, labels=[1, 2], steps=3, guidance=2.0)
    assert samples.images.shape == (6, 1, 8, 8) and samples.nfe == 3 and torch.isfinite(samples.images).all()
    # the weights moved: samples differ from those of the untrained network
    untrained = Sampler(TinyNet(TinyOptions(width=12), BuiltFor(1, 8, 10)), ckpt.record, device="cpu").sample(6, labels=[1, 2], steps=3)
    assert not torch.allclose(samples.images, untrained.images)


def test_its_options_are_its_own_section_validated_by_itself(tiny_backbone, tmp_path):
    with pytest.raises(ConfigError, match=r"\[model.tiny_test_net\] width must be >= 2, got 1"):
        config(tmp_path, **{"model.tiny_test_net.width": 1})
    with pytest.raises(ConfigError, match="tiny backbone takes images up to 64 px, not 96"):  # checked before any data is read
        Trainer(config(tmp_path / "big", **{"data.image_size": 96}), data=blob_images(16, size=96))
    assert not (tmp_path / "big").exists()
    with pytest.raises(ConfigError, match="unknown config key 'model.tiny_test_net.depth'"):
        config(tmp_path, **{"model.tiny_test_net.depth": 3})


def test_a_flow_map_objective_on_the_plugin_gets_a_second_time(tiny_backbone, tmp_path):
    cfg = config(tmp_path / "mf", **{"flow.objective": "mean_flow", "sample.solver": "flow_map", "sample.num_steps": 1,
                                     "train.steps": 2, "train.checkpoint_every": 2})
    Trainer(cfg, data=blob_images(16)).run(progress=False)
    sampler = Sampler.from_checkpoint(tmp_path / "mf", device="cpu")
    assert sampler.flow_map and sampler.model.cond.flow_map
    assert sampler.sample(4, steps=1).nfe == 1
