"""The probability-flow log-likelihood against Gaussian data, where the answer is known in closed form.

Data z ~ N(mu, S) under a Gaussian path x_t = a_t z + b_t eps has the marginal p_t = N(a mu, C_t),
C_t = a^2 S + b^2 I, and (jointly Gaussian (z, eps, x_t)) E[z | x] = mu + a S C^{-1} (x - a mu),
E[eps | x] = b C^{-1} (x - a mu), so the marginal velocity u = d_a E[z|x] + d_b E[eps|x] is

    u_t(x) = d_a mu + M_t (x - a mu),   M_t = (a d_a S + b d_b I) C_t^{-1} = (1/2) (d/dt C_t) C_t^{-1}.

Its flow carries N(0, I) (t = 0) to N(mu, S) (t = 1), so log p_1 must equal log N(x; mu, S). In S's
eigenbasis M_t = diag(d/dt log sqrt(a^2 lam + b^2)), hence int_0^1 M_t dt = (1/2) log S (matrix log):
the Hutchinson estimate v^T (int M dt) v has a known spread (see the image test).
"""

import math

import pytest
import torch

from imgflow.core import CosineSchedule, LinearSchedule, ModelField
from imgflow.core.likelihood import BIN_WIDTH, bits_per_dim, dequantize, draw_probes, log_likelihood


class GaussianDataVelocity:
    """The exact marginal velocity of N(mu, S) data (any per-sample shape; mu and S on the flattened dims)."""

    def __init__(self, mu, cov, schedule):
        self.mu, self.schedule = mu.double(), schedule
        self.lam, self.q = torch.linalg.eigh(cov.double())

    def __call__(self, x, t):
        s = self.schedule
        tt = t.double()[:, None]
        a, b, da, db = s.alpha(tt), s.beta(tt), s.d_alpha(tt), s.d_beta(tt)
        y = (x.flatten(1).double() - a * self.mu) @ self.q
        scale = (a * da * self.lam + b * db) / (a**2 * self.lam + b**2)
        return (da * self.mu + (y * scale) @ self.q.T).to(x.dtype).reshape(x.shape)


def gaussian_log_density(x, mu, cov):
    d = mu.numel()
    diff = x.flatten(1).double() - mu
    sol = torch.linalg.solve(cov, diff.T).T
    return -0.5 * (diff * sol).sum(1) - 0.5 * torch.logdet(cov) - 0.5 * d * math.log(2 * math.pi)


def random_cov(d, g, lo, hi):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.linspace(lo, hi, d, dtype=torch.float64)) @ q.T


@pytest.mark.parametrize("schedule", [LinearSchedule(), CosineSchedule()], ids=["linear", "cosine"])
def test_exact_divergence_2d_matches_the_gaussian_log_density(schedule):
    g = torch.Generator().manual_seed(0)
    mu = torch.tensor([1.0, -0.5], dtype=torch.float64)
    cov = torch.tensor([[0.30, 0.12], [0.12, 0.10]], dtype=torch.float64)  # correlated, anisotropic
    field = GaussianDataVelocity(mu, cov, schedule)
    x = mu + torch.randn(128, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    x = torch.cat([x, mu + torch.tensor([[1.0, -1.0]], dtype=torch.float64)])  # a far tail point too
    exact = gaussian_log_density(x, mu, cov)

    # RK4's global error is O(h^4): with 40 steps the worst point (the far tail, where the cosine
    # schedule's field is stiffest) is off by 7e-5, a typical point by 1e-6 (20 steps: 1e-3 / 3e-5)
    rk4 = log_likelihood(field, x, solver="rk4", num_steps=40, divergence="exact")
    assert rk4.nfe == 160
    assert (rk4.log_prob - exact).abs().max() < 3e-4 and (rk4.log_prob - exact).abs().median() < 2e-5
    # the source point is where the flow started: x0 is N(0, I)-distributed for data x
    assert rk4.prior_log_prob.shape == (129,) and torch.allclose(rk4.log_prob, rk4.prior_log_prob + rk4.delta_log_prob)

    # a grid whose steps shrink towards the data end (as used for images) converges to the same answer
    late = log_likelihood(field, x, solver="rk4", num_steps=40, divergence="exact", grid_power=3.0)
    assert (late.log_prob - exact).abs().median() < 1e-4

    # adaptive (dopri5) with tolerance 1e-6 is as accurate (measured 4e-5 at worst)
    ada = log_likelihood(field, x, solver="adaptive", divergence="exact", rtol=1e-6, atol=1e-6)
    assert (ada.log_prob - exact).abs().max() < 3e-4

    # Euler is first order: its error is a solver error that halves when the steps double
    e1 = (log_likelihood(field, x, solver="euler", num_steps=40, divergence="exact").log_prob - exact).abs().mean()
    e2 = (log_likelihood(field, x, solver="euler", num_steps=80, divergence="exact").log_prob - exact).abs().mean()
    assert 1.6 < e1 / e2 < 2.4, (e1, e2)


def test_hutchinson_on_image_shaped_gaussian_data_is_unbiased_with_the_predicted_spread():
    g = torch.Generator().manual_seed(1)
    shape, d = (1, 8, 8), 64
    mu = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    cov = random_cov(d, g, 0.05, 1.5)  # full (non-diagonal) covariance: Rademacher probes are not exact
    field = GaussianDataVelocity(mu, cov, LinearSchedule())
    n, k = 256, 4
    z = mu + torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    x = z.reshape(n, *shape)
    exact = gaussian_log_density(x, mu, cov)

    # the estimate of int div u dt is v^T N v with N = (1/2) log(cov); for the mean over k probes
    # Var = 2 (|N|_F^2 - sum_i N_ii^2) / k (Rademacher), 2 |N|_F^2 / k (Gaussian)
    lam, q = torch.linalg.eigh(cov)
    big_n = q @ torch.diag(0.5 * lam.log()) @ q.T
    sd = {"rademacher": math.sqrt(2 * (big_n.pow(2).sum() - big_n.diagonal().pow(2).sum()).item() / k),
          "gaussian": math.sqrt(2 * big_n.pow(2).sum().item() / k)}
    for probe in ("rademacher", "gaussian"):
        res = log_likelihood(field, x, solver="rk4", num_steps=10, divergence="hutchinson", probe=probe, num_probes=k, seed=3)
        err = res.log_prob - exact
        # unbiased: the mean of n iid errors is within 4 standard errors (plus ~1e-4 of RK4 error)
        assert abs(err.mean().item()) < 4 * sd[probe] / math.sqrt(n) + 1e-3, (probe, err.mean().item(), sd[probe])
        # the spread is the predicted one (the sample sd of 256 draws is within ~10 %; 25 % allows heavy tails)
        assert 0.75 < err.std().item() / sd[probe] < 1.25, (probe, err.std().item(), sd[probe])
    assert sd["gaussian"] > sd["rademacher"]

    # with enough probes the estimate is close for every image: 64 probes -> sd / 4
    many = log_likelihood(field, x[:16], solver="rk4", num_steps=5, probe="rademacher", num_probes=64, seed=4)
    assert (many.log_prob - exact[:16]).abs().max() < 4 * sd["rademacher"] * math.sqrt(k / 64) + 1e-3


def test_probes_are_seeded_and_have_identity_second_moment():
    a = draw_probes("rademacher", 2, (3, 5), seed=7, dtype=torch.float32, device="cpu")
    b = draw_probes("rademacher", 2, (3, 5), seed=7, dtype=torch.float32, device="cpu")
    assert torch.equal(a, b) and set(a.unique().tolist()) == {-1.0, 1.0}
    v = draw_probes("gaussian", 20000, (4,), seed=0, dtype=torch.float64, device="cpu")
    assert torch.allclose(v.T @ v / 20000, torch.eye(4, dtype=torch.float64), atol=0.05)  # 4 / sqrt(20000) = 0.03


def test_bits_per_dim_and_dequantisation():
    # a density uniform over the data range [-1, 1]^D (log p = -D log 2) codes 8 bits per 8-bit pixel
    d = 784
    assert bits_per_dim(torch.tensor([-d * math.log(2.0)]), d).item() == pytest.approx(8.0)
    # and the standard normal's density at 0 gives -log N(0) / (D ln 2) + 7
    assert bits_per_dim(torch.tensor([-0.5 * d * math.log(2 * math.pi)]), d).item() == pytest.approx(0.5 * math.log2(2 * math.pi) + 7)
    k = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16).repeat(50, 1, 1, 1)
    x = dequantize(k, seed=0)
    centre = k.float() / 127.5 - 1
    assert (x - centre).abs().max() <= BIN_WIDTH / 2 + 1e-6  # stays in the pixel's own bin
    assert (x - centre).abs().max() > 0.45 * BIN_WIDTH  # and fills it
    assert torch.equal(x, dequantize(k, seed=0)) and not torch.equal(x, dequantize(k, seed=1))


def test_model_fields_with_singular_ends_stop_short_and_inference_mode_is_refused():
    calls = []

    def noise_model(x, t, y=None):
        calls.append(t.min().item())
        return -x  # a "noise prediction"; its velocity divides by alpha_t, singular at t = 0

    field = ModelField(noise_model, "noise", LinearSchedule())
    assert field.singular_times == (0.0,)
    x = torch.randn(4, 1, 4, 4)
    res = log_likelihood(field, x, solver="heun", num_steps=5)
    assert torch.isfinite(res.log_prob).all() and min(calls) == pytest.approx(1e-3, rel=1e-4)
    with torch.inference_mode(), pytest.raises(RuntimeError, match="outside torch.inference_mode"):
        log_likelihood(field, x)
    with pytest.raises(ValueError, match="deterministic"):
        log_likelihood(field, x, solver="euler_maruyama")


def test_a_constant_field_shifts_without_changing_the_volume():
    # u = c moves x by c in unit time and keeps volumes: log p_1(x) = log N(x - c; 0, I) exactly
    c = torch.tensor([0.5, -1.0], dtype=torch.float64)
    x = torch.randn(8, 2, dtype=torch.float64)
    for divergence in ("exact", "hutchinson"):
        res = log_likelihood(lambda x, t: c.expand_as(x), x, solver="euler", num_steps=3, divergence=divergence)
        assert torch.allclose(res.delta_log_prob, torch.zeros(8, dtype=torch.float64))
        assert torch.allclose(res.x0, x - c)
