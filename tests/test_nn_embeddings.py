"""Time and class embeddings of imgflow.nn."""

from __future__ import annotations

import math

import pytest
import torch

from imgflow.nn.embeddings import (
    ClassEmbedding,
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
    drop_labels,
    make_time_embedding,
    sinusoidal_features,
    time_vector,
)


def test_time_vector_broadcasts_scalars_and_flattens_columns():
    assert torch.equal(time_vector(0.25, 3), torch.full((3,), 0.25))
    assert torch.equal(time_vector(torch.tensor(0.25), 3), torch.full((3,), 0.25))
    col = torch.tensor([0.1, 0.2, 0.3]).reshape(3, 1, 1, 1)
    assert torch.equal(time_vector(col, 3), col.flatten())
    assert time_vector(torch.tensor([1, 0], dtype=torch.long), 2).dtype == torch.float32
    assert time_vector(torch.tensor([0.5], dtype=torch.bfloat16), 2).dtype == torch.float32
    with pytest.raises(ValueError, match="batch size 3"):
        time_vector(torch.rand(2), 3)


def test_sinusoidal_features_match_the_formula_and_scale_time_by_1000():
    t = torch.tensor([0.0, 0.003, 0.5])
    dim = 8
    feats = sinusoidal_features(t, dim)
    assert feats.shape == (3, dim)
    # t = 0: cos = 1, sin = 0
    assert torch.equal(feats[0], torch.cat([torch.ones(4), torch.zeros(4)]))
    # the first frequency is 1, applied to 1000 t
    assert feats[1, 0].item() == pytest.approx(math.cos(3.0), abs=1e-5)
    assert feats[1, 4].item() == pytest.approx(math.sin(3.0), abs=1e-5)
    # last frequency: 10000 ** (-3 / 4)
    assert feats[2, 7].item() == pytest.approx(math.sin(500.0 * 10000 ** (-3 / 4)), abs=1e-5)
    assert sinusoidal_features(t, 7).shape == (3, 7)


@pytest.mark.parametrize("kind", ["sinusoidal", "fourier"])
def test_time_embeddings_map_to_out_dim_and_separate_close_times(kind):
    torch.manual_seed(0)
    emb = make_time_embedding(kind, 16, 64)
    out = emb(torch.tensor([0.5, 0.501, 0.5]))
    assert out.shape == (3, 64)
    torch.testing.assert_close(out[0], out[2], atol=1e-6, rtol=0)  # one input, two rows of a GEMM: kernels may block rows apart
    assert not torch.allclose(out[0], out[1], atol=1e-4)


def test_fourier_frequencies_fixed_or_learnable_and_saved():
    torch.manual_seed(0)
    fixed = FourierTimeEmbedding(16, 32, scale=4.0)
    assert "freqs" in dict(fixed.named_buffers())
    assert "freqs" not in dict(fixed.named_parameters())
    assert "freqs" in fixed.state_dict()
    assert fixed.freqs.std().item() == pytest.approx(4.0, rel=0.6)

    learn = FourierTimeEmbedding(16, 32, learnable=True)
    assert "freqs" in dict(learn.named_parameters())
    learn(torch.rand(5)).sum().backward()
    assert learn.freqs.grad is not None and learn.freqs.grad.abs().sum() > 0

    with pytest.raises(ValueError, match="even"):
        FourierTimeEmbedding(15, 32)


def test_embedding_follows_weight_dtype_of_a_converted_model():
    emb = SinusoidalTimeEmbedding(16, 32).to(torch.bfloat16)
    assert emb(torch.rand(4)).dtype == torch.bfloat16


def test_unknown_time_embedding_is_rejected():
    with pytest.raises(ValueError, match="unknown time embedding 'gaussian'"):
        make_time_embedding("gaussian", 8, 16)


def test_class_embedding_has_a_learned_null_row():
    ce = ClassEmbedding(10, 12)
    assert ce.embedding.num_embeddings == 11
    assert ce.null_index == 10
    null = ce(None, batch_size=3)
    assert null.shape == (3, 12)
    assert torch.equal(null, ce(torch.full((3,), 10)))
    assert not torch.equal(null[0], ce(torch.tensor([3]))[0])
    assert ce.embedding.weight.requires_grad
    with pytest.raises(TypeError):
        ce(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="batch size 3"):
        ce(torch.tensor([1, 2]), batch_size=3)


def test_drop_labels():
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, 10, (20000,), generator=g)
    assert torch.equal(drop_labels(y, 0.0, 10), y)
    assert torch.equal(drop_labels(y, 1.0, 10), torch.full_like(y, 10))
    dropped = drop_labels(y, 0.2, 10, generator=g)
    frac = (dropped == 10).float().mean().item()
    assert frac == pytest.approx(0.2, abs=0.02)
    kept = dropped != 10
    assert torch.equal(dropped[kept], y[kept])
    with pytest.raises(ValueError):
        drop_labels(y, 1.5, 10)
