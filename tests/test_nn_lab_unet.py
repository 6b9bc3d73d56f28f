"""The course lab's MNIST U-Net baseline (LabUNet)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgflow.nn import LabUNet, count_parameters


def test_shapes_and_default_layout():
    torch.manual_seed(0)
    model = LabUNet()
    x = torch.randn(4, 1, 32, 32)
    out = model(x, torch.rand(4), torch.tensor([0, 3, 9, 10]))
    assert out.shape == (4, 1, 32, 32)
    assert out.dtype == torch.float32
    assert model.time_embedder.weights.shape == (1, 20)  # 40 = 2 x 20 (sin, cos)
    assert model.init_conv[0].out_channels == 32
    assert [e.downsample.out_channels for e in model.encoders] == [64, 128]
    # skips are ADDED: the decoders see the un-doubled width
    assert [d.upsample[1].in_channels for d in model.decoders] == [128, 64]
    assert [d.upsample[1].out_channels for d in model.decoders] == [64, 32]
    assert isinstance(model.decoders[0].upsample[0], nn.Upsample)
    assert model.decoders[0].upsample[0].mode == "bilinear"
    assert all(len(e.res_blocks) == 2 for e in model.encoders)
    assert len(model.midcoder.res_blocks) == 2
    block = model.encoders[0].res_blocks[0].block1
    assert [type(m) for m in block] == [nn.SiLU, nn.BatchNorm2d, nn.Conv2d]


def test_eleven_label_embedding_with_null_10():
    model = LabUNet().eval()
    assert isinstance(model.y_embedder, nn.Embedding)
    assert model.y_embedder.num_embeddings == 11
    assert model.y_embedder.embedding_dim == 40
    assert model.null_label == 10
    x, t = torch.randn(3, 1, 32, 32), torch.rand(3)
    null = model(x, t, torch.full((3,), 10))
    assert torch.equal(model(x, t), null)
    assert not torch.allclose(model(x, t, torch.tensor([1, 2, 3])), null)


def test_parameter_count_matches_the_lab_network():
    # counted by hand from the lab's layers: residual layers 24,528 / 82,640 / 309,456 at
    # widths 32 / 64 / 128, convs, BatchNorms, 20 Fourier weights, 11 x 40 label rows
    assert count_parameters(LabUNet()) == 1_233_325
    assert LabUNet().num_parameters() == 1_233_325


def test_state_dict_names_follow_the_lab():
    """Every layer keeps the lab's name except the two embeddings, now in the shared conditioning module;
    a state dict with the lab's names for them loads all the same."""
    model = LabUNet()
    keys = set(model.state_dict())
    assert {"cond.time_embed.weights", "cond.class_embed.embedding.weight"} <= keys
    lab_named = {model.legacy_renames.get(k, k): v for k, v in LabUNet().state_dict().items()}
    lab_named = {("time_embedder.weights" if k == "cond.time_embed.weights" else
                  "y_embedder.weight" if k == "cond.class_embed.embedding.weight" else k): v for k, v in lab_named.items()}
    assert "time_embedder.weights" in lab_named and "y_embedder.weight" in lab_named
    model.load_state_dict(lab_named)
    assert torch.equal(model.y_embedder.weight, lab_named["y_embedder.weight"])
    for key in [
        "init_conv.0.weight",
        "init_conv.1.running_mean",
        "encoders.0.res_blocks.1.block2.2.weight",
        "encoders.1.res_blocks.0.time_adapter.2.weight",
        "encoders.1.res_blocks.0.y_adapter.0.bias",
        "encoders.1.downsample.weight",
        "midcoder.res_blocks.1.block1.1.running_var",
        "decoders.0.upsample.1.weight",
        "decoders.1.res_blocks.1.block1.2.bias",
        "final_conv.weight",
    ]:
        assert key in keys


def test_time_forms_agree_and_time_matters():
    torch.manual_seed(0)
    model = LabUNet().eval()
    x, y = torch.randn(2, 1, 32, 32), torch.tensor([4, 5])
    ref = model(x, torch.full((2,), 0.7), y)
    assert torch.equal(model(x, 0.7, y), ref)
    assert torch.equal(model(x, torch.full((2, 1, 1, 1), 0.7), y), ref)  # the lab's (B, 1, 1, 1)
    assert not torch.allclose(model(x, 0.2, y), ref)


def test_fourier_weights_are_learned():
    model = LabUNet()
    assert isinstance(model.time_embedder.weights, nn.Parameter)
    model(torch.randn(2, 1, 32, 32), torch.rand(2), torch.tensor([1, 2])).square().mean().backward()
    assert model.time_embedder.weights.grad.abs().sum() > 0
    assert model.y_embedder.weight.grad[[1, 2]].abs().sum() > 0
    assert model.y_embedder.weight.grad[10].abs().sum() == 0


def test_image_size_validation_and_28x28():
    with pytest.raises(ValueError, match="image_size 30"):
        LabUNet(image_size=30)
    model = LabUNet()
    with pytest.raises(ValueError, match=r"\(2, 1, 28, 28\)"):
        model(torch.randn(2, 1, 28, 28), 0.5)
    assert LabUNet(image_size=28)(torch.randn(2, 1, 28, 28), 0.5).shape == (2, 1, 28, 28)
