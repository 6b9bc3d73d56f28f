"""toy.metrics: the sample distances and error measures behave as their math says."""

import math

import pytest
import torch

from toy.metrics import energy_distance, excess_kurtosis, null_distance_band, relative_l2, sliced_wasserstein


def test_energy_distance_null_and_shift():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(1500, 2, generator=g), torch.randn(1500, 2, generator=g)
    same = energy_distance(a, b).item()
    assert abs(same) < 0.01  # unbiased: null values are O(1/n) around 0
    # for a small shift d of N(0, I) in 2-D the energy distance is ~ c d^2 (quadratic)
    d1 = energy_distance(a, b + 0.5).item()
    d2 = energy_distance(a, b + 1.0).item()
    assert d1 > 0.05 and d2 / d1 == pytest.approx(4.0, rel=0.3)
    # far apart: 2 E|s + W| - 2 E|X - X'| with W ~ N(0, 2I): 2 (|s| + 1 / |s|) - 2 sqrt(pi) to O(|s|^-3)
    far = energy_distance(a, b + torch.tensor([10.0, 0.0])).item()
    assert far == pytest.approx(2 * 10.1 - 2 * math.sqrt(math.pi), rel=0.02)


def test_sliced_wasserstein_of_a_shift():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(2000, 2, generator=g)
    shift = torch.tensor([3.0, 0.0])
    # W1 of a shift along a direction theta is |shift . theta|; averaged over the circle: 2|shift|/pi.
    # Over 500 random directions |cos| has relative std 0.48, so the mean is within 5 SE = 11%
    assert sliced_wasserstein(a, a + shift, num_projections=500).item() == pytest.approx(2 * 3.0 / math.pi, rel=0.11)


def test_null_band_and_error_measures():
    torch.manual_seed(0)
    band = null_distance_band(lambda n: torch.randn(n, 2), lambda n: torch.randn(n, 2), 500, 8, k=4.0)
    assert band["band"] == pytest.approx(band["mean"] + 4 * band["std"])
    assert band["std"] > 0
    x = torch.randn(100, 2)
    assert relative_l2(x, x) == 0.0
    assert relative_l2(2 * x, x) == pytest.approx(1.0)
    n = 400_000
    assert excess_kurtosis(torch.randn(n)) == pytest.approx(0.0, abs=5 * math.sqrt(24 / n))
    assert excess_kurtosis(torch.rand(n)) == pytest.approx(-1.2, abs=0.02)  # uniform: -6/5
