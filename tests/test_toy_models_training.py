"""toy.models and toy.training: shapes, activations, one short training per objective."""

import pytest
import torch

from imgflow.core import GaussianPath, LinearPath, LinearSchedule, flow_matching_loss
from imgflow.core.jvp import jvp
from imgflow.core.mean_flow import mean_flow_loss
from toy.densities import GaussianMixture
from toy.models import MLPFlowMap, MLPScore, MLPVectorField
from toy.training import train, train_flow_matching, train_interpolant, train_score_matching


def test_mlp_shapes_and_time_formats():
    model = MLPVectorField(dim=2, hiddens=(16, 8), activation="relu")
    x = torch.randn(7, 2)
    out = model(x, torch.rand(7))
    assert out.shape == (7, 2)
    assert torch.equal(model(x, torch.full((7, 1), 0.3)), model(x, torch.full((7,), 0.3)))
    assert torch.equal(model(x, 0.3), model(x, torch.full((7,), 0.3)))
    linears = [m for m in model.net if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(3, 16), (16, 8), (8, 2)]
    assert isinstance(model.net[1], torch.nn.ReLU)
    assert MLPScore(3, (4,))(torch.randn(2, 3), torch.rand(2)).shape == (2, 3)
    with pytest.raises(ValueError, match="unknown activation"):
        MLPVectorField(activation="swish!")


def _path():
    return GaussianPath(LinearSchedule(), p_data=GaussianMixture.symmetric_2D(3, 0.5, 3.0))


@pytest.mark.parametrize("trainer", [train_flow_matching, train_score_matching, train_interpolant])
def test_short_training_lowers_the_loss(trainer):
    torch.manual_seed(0)
    model = MLPVectorField(2, (32, 32))
    hist = trainer(model, _path(), num_iterations=300, batch_size=256, lr=3e-3, seed=0, progress=False)
    assert len(hist) == 300
    first, last = sum(hist[:30]) / 30, sum(hist[-30:]) / 30
    # the untrained model has loss ~ E|target|^2; 300 steps remove a clear part of the learnable error
    assert last < first - 0.1 * abs(first)


def test_training_is_reproducible_and_leaves_global_rng_alone():
    path = _path()
    runs = []
    for _ in range(2):
        torch.manual_seed(5)
        model = MLPVectorField(2, (8,))
        runs.append(train_flow_matching(model, path, num_iterations=20, batch_size=32, seed=7, progress=False))
    assert runs[0] == runs[1]
    torch.manual_seed(123)
    model = MLPVectorField(2, (8,))
    state = torch.get_rng_state()
    train(model, flow_matching_loss, path, num_iterations=5, batch_size=8, seed=1, progress=False)
    assert torch.equal(torch.get_rng_state(), state)


def test_score_training_needs_a_gaussian_path():
    with pytest.raises(TypeError, match="GaussianPath"):
        train_score_matching(MLPScore(), LinearPath(p_data=GaussianMixture.symmetric_2D(2, 1.0, 1.0)), num_iterations=1, batch_size=4)


@pytest.mark.parametrize("activation", ["silu", "relu", "tanh"])
def test_flow_map_analytic_jvp_matches_forward_mode_ad(activation):
    """MLPFlowMap(analytic_jvp=True) gives the core's (u, du/dt) along (v, 1, 0), and the same MeanFlow loss and gradients."""
    torch.manual_seed(0)
    model = MLPFlowMap(2, (32, 32, 32), activation, analytic_jvp=True)
    x, v = torch.randn(64, 2), torch.randn(64, 2)
    t = torch.rand(64)
    r = torch.where(torch.rand(64) < 0.25, t, torch.maximum(t, torch.rand(64)))
    u, du = model.average_velocity_and_derivative(x, t, r, v)
    u_ad, du_ad = jvp(lambda xx, tt, rr: model(xx, tt, r=rr), (x, t, r), (v, torch.ones_like(t), torch.zeros_like(r)))
    # the hand-written JVP, a plain forward and torch.func's primal are three code paths: equal to float rounding
    torch.testing.assert_close(u, model(x, t, r), atol=1e-6, rtol=0)
    torch.testing.assert_close(u, u_ad, atol=1e-6, rtol=0)
    assert u.requires_grad and not du.requires_grad
    torch.testing.assert_close(du, du_ad, rtol=1e-5, atol=1e-6)
    # the loss asks the model for du/dt (its hook); the reference path is the functorch JVP (analytic_jvp=False)
    path = _path()
    data = path.sample_conditioning_variable(64)
    losses, grads = [], []
    for analytic in (True, False):
        model.analytic_jvp = analytic
        torch.manual_seed(1)
        loss = mean_flow_loss(model, path, data, t, r, adaptive_p=0.0)
        losses.append(loss)
        grads.append(torch.autograd.grad(loss, list(model.parameters())))
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-7)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="analytic_jvp"):
        MLPFlowMap(activation="elu", analytic_jvp=True)


def test_fused_adam_takes_the_same_steps():
    """train(fused=True) is the same update rule: the loss histories of a short run agree to rounding."""
    path = _path()
    hists = []
    for fused in (False, True):
        torch.manual_seed(3)
        model = MLPVectorField(2, (16, 16))
        hists.append(train_flow_matching(model, path, num_iterations=20, batch_size=64, lr=1e-2, seed=4, progress=False, fused=fused))
    assert hists[0] == pytest.approx(hists[1], rel=1e-4)
