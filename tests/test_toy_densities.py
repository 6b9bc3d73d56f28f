"""toy.densities: moments match parameters, scores match finite differences, seeding works."""

import math

import pytest
import torch

from toy.densities import Checkerboard, Circles, Gaussian, GaussianMixture, Moons


def _finite_difference_score(density, x, h=1e-4):
    x = x.double()
    grads = []
    for i in range(x.shape[1]):
        e = torch.zeros_like(x)
        e[:, i] = h
        grads.append((density.log_density(x + e) - density.log_density(x - e)) / (2 * h))
    return torch.stack(grads, dim=1)


def test_gaussian_moments_and_score():
    mean = torch.tensor([1.0, -2.0])
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]])
    g = Gaussian(mean, cov, seed=0)
    x = g.sample(200_000)
    # mean SE = sqrt(cov_ii / n) <= 3.2e-3: 5 SE = 0.016; covariance entries SE <= 2 * sqrt(2/n) * 2 ~ 0.013: allow 0.04
    assert torch.allclose(x.mean(0), mean, atol=0.016)
    assert torch.allclose(torch.cov(x.T), cov, atol=0.04)
    pts = torch.randn(16, 2)
    exact = -torch.linalg.solve(cov, (pts - mean).T).T
    assert torch.allclose(g.score(pts), exact, atol=1e-5)
    # log density integrates the normalised Gaussian: compare with the closed form at the mean
    assert g.log_density(mean[None]).item() == pytest.approx(-math.log(2 * math.pi) - 0.5 * math.log(torch.det(cov).item()), abs=1e-5)


def test_gaussian_mixture_moments_score_and_seed():
    gmm = GaussianMixture.random_2D(nmodes=4, std=0.7, scale=6.0, seed=3)
    assert gmm.means.shape == (4, 2) and gmm.covs.shape == (4, 2, 2)
    assert torch.all(gmm.means.abs() <= 3.0)
    x = gmm.sample(200_000)
    w = gmm.weights
    mix_mean = (w[:, None] * gmm.means).sum(0)
    second = (w[:, None, None] * (gmm.covs + gmm.means[:, :, None] * gmm.means[:, None, :])).sum(0)
    mix_cov = second - mix_mean[:, None] * mix_mean[None, :]
    sd = mix_cov.diagonal().sqrt()
    assert torch.all((x.mean(0) - mix_mean).abs() < 5 * sd / math.sqrt(200_000))
    assert torch.allclose(torch.cov(x.T), mix_cov, rtol=0.03, atol=0.03)
    pts = torch.randn(32, 2) * 3
    assert torch.allclose(gmm.score(pts).double(), _finite_difference_score(gmm, pts), atol=1e-3)
    # the same seed gives the same mixture and the same draws
    again = GaussianMixture.random_2D(nmodes=4, std=0.7, scale=6.0, seed=3)
    assert torch.equal(again.means, gmm.means)
    assert torch.equal(GaussianMixture.random_2D(4, 0.7, 6.0, seed=3).sample(10), GaussianMixture.random_2D(4, 0.7, 6.0, seed=3).sample(10))


def test_symmetric_mixture_modes_on_circle():
    gmm = GaussianMixture.symmetric_2D(nmodes=5, std=0.5, scale=4.0)
    assert torch.allclose(gmm.means.norm(dim=1), torch.full((5,), 4.0), atol=1e-5)
    angles = torch.atan2(gmm.means[:, 1], gmm.means[:, 0]) % (2 * math.pi)
    assert torch.allclose(angles.sort().values, torch.arange(5) * 2 * math.pi / 5, atol=1e-5)
    # a single-mode mixture equals the Gaussian
    one = GaussianMixture(torch.tensor([[1.0, 2.0]]), torch.eye(2)[None] * 0.3)
    g = Gaussian(torch.tensor([1.0, 2.0]), torch.eye(2) * 0.3)
    pts = torch.randn(20, 2)
    assert torch.allclose(one.log_density(pts), g.log_density(pts), atol=1e-5)


def test_checkerboard_support_and_normalisation():
    board = Checkerboard(grid_size=4, scale=4.0, seed=1)
    x = board.sample(50_000)
    assert board.is_black(x).all()
    assert (x.abs() <= 4.0).all()
    # each of the 8 black cells gets 1/8 of the mass: multinomial SE sqrt(p(1-p)/n) = 1.5e-3
    cells = torch.floor((x + 4.0) / 2.0)
    counts = torch.unique(cells, dim=0, return_counts=True)[1].float() / len(x)
    assert len(counts) == 8 and torch.allclose(counts, torch.full((8,), 1 / 8), atol=8e-3)
    # the piecewise-constant density integrates to one on a fine grid
    g = torch.linspace(-4.5, 4.5, 451)
    gx, gy = torch.meshgrid(g, g, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], 1) + 1e-4
    mass = board.log_density(pts).exp().sum() * (g[1] - g[0]) ** 2
    assert mass.item() == pytest.approx(1.0, abs=0.03)
    with pytest.raises(NotImplementedError):
        board.score(pts[:2])


def test_moons_and_circles_geometry():
    circles = Circles(noise=0.0, factor=0.5, scale=3.0, seed=0)
    r = circles.sample(10_000).norm(dim=1)
    assert torch.all(torch.isclose(r, torch.tensor(3.0)) | torch.isclose(r, torch.tensor(1.5)))
    frac_outer = torch.isclose(r, torch.tensor(3.0)).float().mean().item()
    assert frac_outer == pytest.approx(0.5, abs=5 * 0.5 / math.sqrt(10_000))
    moons = Moons(noise=0.05, scale=2.0, seed=0)
    m = moons.sample(40_000)
    assert m.shape == (40_000, 2)
    assert m.mean(0).abs().max().item() < 0.05  # centred: exact mean 0 up to noise
    with pytest.raises(NotImplementedError):
        moons.log_density(m[:3])
    assert torch.equal(Moons(seed=5).sample(7), Moons(seed=5).sample(7))


def test_mixture_samples_come_with_the_component_that_drew_them():
    mixture = GaussianMixture.symmetric_2D(nmodes=4, std=0.1, scale=5.0, seed=3)
    x, k = mixture.sample_with_labels(2_000)
    assert k.dtype == torch.long and set(k.tolist()) == {0, 1, 2, 3}
    # modes 7 apart with std 0.1: every sample is nearest to the mean of its own component
    assert torch.equal(torch.cdist(x, mixture.means).argmin(1), k)
    again = GaussianMixture.symmetric_2D(nmodes=4, std=0.1, scale=5.0, seed=3).sample(2_000)
    assert torch.equal(again, x)  # sample() is the same draw without the labels
