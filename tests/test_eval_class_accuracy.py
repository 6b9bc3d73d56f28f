"""Class accuracy of guided samples, with a fake flow model and a fake classifier whose answer is known."""

import math

import pytest
import torch
from torch import nn

from imgflow.data import DataSpec
from imgflow.evaluation.class_accuracy import accuracy_from_predictions, class_accuracy
from imgflow.sampler import Sampler, balanced_labels
from tests.image_helpers import tiny_config

REGION = 6  # pixels per class region in the flattened 8x8 image: class k owns pixels 6k .. 6k + 5



class ConstantClassField(nn.Module):
    """u(x, t, y) = amplitude on class y's pixel region (0 for the null label 10), whatever x and t.

    The flow of a constant field is exact for every solver: x_1 = x_0 + u, and under guidance w
    (null field 0) x_1 = x_0 + w * amplitude on the region of y.
    """

    def __init__(self, amplitude: float) -> None:
        super().__init__()
        self.amplitude = amplitude

    def forward(self, x, t, y=None):
        out = torch.zeros(x.shape[0], 64)
        for k in range(10):
            out[y == k, REGION * k : REGION * (k + 1)] = self.amplitude
        return out.reshape(x.shape)


def region_classifier(x):
    """Logits = the mean of each class region."""
    flat = x.flatten(1)[:, : 10 * REGION]
    return flat.reshape(x.shape[0], 10, REGION).mean(2)


def expected_accuracy(signal: float) -> float:
    """P(the true region's mean beats 9 others): means ~ N(signal, 1/6) vs N(0, 1/6), by quadrature."""
    sd = math.sqrt(1 / REGION)
    z = torch.linspace(-10, 10, 20001, dtype=torch.float64)
    phi = torch.exp(-0.5 * z**2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * (1 + torch.erf((z + signal / sd) / math.sqrt(2)))
    return float(torch.trapezoid(phi * cdf**9, z))


def test_accuracy_from_predictions_counts_per_class_and_confusion():
    labels = balanced_labels(30, list(range(10)))
    assert labels.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1] and torch.bincount(labels).tolist() == [3] * 10
    pred = labels.clone()
    pred[labels == 3] = 5  # every 3 is taken for a 5
    pred[0] = 9  # one 0 is taken for a 9
    res = accuracy_from_predictions(pred, labels, 10, guidance_scale=2.0)
    assert res.accuracy == pytest.approx(26 / 30)
    assert res.per_class[3] == 0.0 and res.per_class[0] == pytest.approx(2 / 3) and res.per_class[1] == 1.0
    assert res.confusion[3][5] == 3 and res.confusion[0][9] == 1 and sum(map(sum, res.confusion)) == 30
    assert res.num_samples == 30 and res.guidance_scale == 2.0
    few = accuracy_from_predictions(torch.tensor([1]), torch.tensor([1]), 10)
    assert few.accuracy == 1.0 and math.isnan(few.per_class[0])


def test_guidance_moves_class_accuracy_from_chance_to_one_as_predicted(tmp_path):
    cfg = tiny_config(tmp_path / "run")
    sampler = Sampler(ConstantClassField(amplitude=1.0), cfg, DataSpec("blobs", 1, 8, tuple("abcdefghij")))
    per_class = 60
    n = 10 * per_class
    results = class_accuracy(sampler, region_classifier, [0.0, 0.4, 3.0], per_class, solver="euler", steps=2, seed=5, batch_size=256)
    assert [r.guidance_scale for r in results] == [0.0, 0.4, 3.0] and all(r.num_samples == n for r in results)
    for r in results:
        expected = 0.1 if r.guidance_scale == 0.0 else expected_accuracy(r.guidance_scale * 1.0)
        binomial_sd = math.sqrt(expected * (1 - expected) / n)
        # 4 binomial standard deviations (plus a hair for the quadrature) around the exact accuracy
        assert abs(r.accuracy - expected) <= 4 * binomial_sd + 1e-3, (r.guidance_scale, r.accuracy, expected)
    assert 0.2 < expected_accuracy(0.4) < 0.5  # the middle case (0.33) is neither chance nor 1
    assert results[2].accuracy > 0.99 and min(results[2].per_class) > 0.95
    # the same noise seeds at every scale: at w = 0 the samples are the pure noise, identical across calls
    again = class_accuracy(sampler, region_classifier, [0.0], per_class, solver="heun", steps=1, seed=5)
    assert again[0].confusion == results[0].confusion
