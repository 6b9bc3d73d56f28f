"""AdamW with decoupled decay on weights only; plain Adam when weight decay is off."""

import pytest
import torch
from torch import nn

from imgflow.config import load_config
from imgflow.nn import UNet
from imgflow.training.optimizer import build_optimizer, decay_groups, no_decay_names


def small_unet():
    return UNet(in_channels=1, image_size=8, base_channels=8, channel_mults=(1, 2), num_res_blocks=1, attention_resolutions=(4,),
                num_classes=3, time_embedding="fourier", learnable_fourier=True)


def test_groups_partition_the_parameters_and_spare_biases_norms_embeddings_and_frequencies():
    model = small_unet()
    groups = decay_groups(model, 0.1)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
    spared = set(no_decay_names(model))
    assert "cond.class_embed.embedding.weight" in spared and "cond.time_embed.freqs" in spared
    assert all(n in spared for n, p in model.named_parameters() if n.endswith(".bias") or "norm" in n)
    decayed = {n for n, _ in model.named_parameters()} - spared
    assert "input_blocks.0.0.weight" in decayed and "cond.time_embed.mlp.0.weight" in decayed
    assert all(p.dim() >= 2 for n, p in model.named_parameters() if n in decayed)


def test_the_decay_is_decoupled_and_skips_biases():
    """With a zero gradient Adam's update is zero, so only the decay moves a weight: by exactly lr * wd * w (AdamW).
    Coupled L2 inside Adam would instead feed wd * w through the normalised step and move it by about lr."""
    layer = nn.Linear(3, 2)
    train = load_config(None, {"train.weight_decay": 0.1, "train.lr": 0.01}).train
    opt = build_optimizer(layer, train)
    assert isinstance(opt, torch.optim.AdamW)
    w, b = layer.weight.detach().clone(), layer.bias.detach().clone()
    layer.weight.grad, layer.bias.grad = torch.zeros_like(w), torch.zeros_like(b)
    opt.step()
    torch.testing.assert_close(layer.weight.detach(), w * (1 - 0.01 * 0.1), rtol=0, atol=1e-7)
    assert torch.equal(layer.bias.detach(), b)
    coupled = nn.Linear(3, 2)
    coupled.load_state_dict({"weight": w, "bias": b})
    adam = torch.optim.Adam(coupled.parameters(), lr=0.01, weight_decay=0.1)
    coupled.weight.grad, coupled.bias.grad = torch.zeros_like(w), torch.zeros_like(b)
    adam.step()
    assert (coupled.weight.detach() - w).abs().min() > 0.5 * 0.01  # the L2 version steps by ~lr whatever the weight


@pytest.mark.parametrize("wd", [0.0])
def test_no_weight_decay_is_plain_adam(wd):
    opt = build_optimizer(small_unet(), load_config(None, {"train.weight_decay": wd}).train)
    assert type(opt) is torch.optim.Adam and len(opt.param_groups) == 1 and opt.param_groups[0]["weight_decay"] == 0


def test_the_lab_unets_learned_fourier_frequencies_are_not_decayed_though_two_dimensional():
    """LabFourierEncoder keeps its frequencies as a (1, dim/2) matrix: the dim >= 2 rule alone would decay them."""
    from imgflow.nn.lab_unet import LabUNet

    model = LabUNet(channels=(8, 16), num_residual_layers=1, image_size=8)
    spared = set(no_decay_names(model))
    assert model.cond.time_embed.weights.dim() == 2 and "cond.time_embed.weights" in spared
    assert "cond.class_embed.embedding.weight" in spared
    assert all(n in spared for n, p in model.named_parameters() if p.dim() < 2)  # biases and BatchNorm weights
    ids = [id(p) for g in decay_groups(model, 0.1) for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in model.parameters()) and len(set(ids)) == len(ids)
