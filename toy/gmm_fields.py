"""Exact marginal score and velocity of a Gaussian-mixture data distribution on a Gaussian path.

Data z ~ sum_k w_k N(mu_k, Sigma_k) and x_t = alpha_t z + beta_t eps, eps ~ N(0, I), give

    p_t(x) = sum_k w_k N(x; alpha mu_k, C_k),   C_k = alpha^2 Sigma_k + beta^2 I.

With posterior weights r_k(x) = w_k N(x; alpha mu_k, C_k) / p_t(x):

    score     s_t(x)   = sum_k r_k (-C_k^{-1} (x - alpha mu_k))
    data      E[z|x]   = sum_k r_k (mu_k + alpha Sigma_k C_k^{-1} (x - alpha mu_k))
    noise     E[eps|x] = -beta s_t(x)                                   (Tweedie)
    velocity  u_t(x)   = d_alpha E[z|x] + d_beta E[eps|x]

All four are finite at t = 1 when every Sigma_k is non-degenerate (C_k -> Sigma_k), unlike
the conditional fields (whose C is beta^2 I). Computation is in float64 and batched over
x (B, D) and t (B,) or a scalar; results come back in x's dtype.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from imgflow.core import GaussianPath, Schedule, batch_times
from toy.densities import GaussianMixture

__all__ = ["GaussianMixtureMarginals"]


class GaussianMixtureMarginals:
    """The marginal path p_t of a Gaussian mixture under `path` (a core GaussianPath, any schedule).

    Args:
        mixture: the data distribution p_1 (= p_data).
        path: the Gaussian path; only its schedule is used.
    """

    def __init__(self, mixture: GaussianMixture, path: GaussianPath | Schedule) -> None:
        self.mixture = mixture
        self.path = path if isinstance(path, GaussianPath) else GaussianPath(path)
        self.schedule = self.path.schedule
        self._means = mixture.means.double()  # (K, D)
        self._covs = mixture.covs.double()  # (K, D, D)
        self._logw = torch.log(mixture.weights.double())  # (K,)

    # --- internals ------------------------------------------------------------------------
    def _coeffs(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, ...]:
        t64 = batch_times(t, x).double()[:, None]  # (B, 1)
        s = self.schedule
        return s.alpha(t64), s.beta(t64), s.d_alpha(t64), s.d_beta(t64)

    def _components(self, x: Tensor, t: Tensor | float) -> dict[str, Tensor]:
        """Per-component quantities: log joint (B, K), C^{-1}(x - alpha mu) (B, K, D), coefficients."""
        x64 = x.double()
        a, b, da, db = self._coeffs(x, t)
        d = x.shape[1]
        eye = torch.eye(d, dtype=torch.float64)
        # C_k = alpha^2 Sigma_k + beta^2 I: (B, K, D, D)
        cov = a[:, :, None, None] ** 2 * self._covs[None] + (b[:, :, None, None] ** 2) * eye
        chol = torch.linalg.cholesky(cov)
        diff = x64[:, None, :] - a[:, :, None] * self._means[None]  # (B, K, D)
        half = torch.linalg.solve_triangular(chol, diff.unsqueeze(-1), upper=False)  # L^{-1} diff
        prec_diff = torch.linalg.solve_triangular(chol.transpose(-1, -2), half, upper=True).squeeze(-1)
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)  # (B, K)
        log_joint = self._logw - 0.5 * half.squeeze(-1).pow(2).sum(-1) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)
        return {"log_joint": log_joint, "prec_diff": prec_diff, "a": a, "b": b, "da": da, "db": db}

    # --- public ---------------------------------------------------------------------------
    def log_density(self, x: Tensor, t: Tensor | float) -> Tensor:
        """log p_t(x): (B,). Differentiable in x."""
        return torch.logsumexp(self._components(x, t)["log_joint"], dim=-1).to(x.dtype)

    def posterior(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Component responsibilities r_k(x) = P(k | x_t = x): (B, K)."""
        return torch.softmax(self._components(x, t)["log_joint"], dim=-1).to(x.dtype)

    def score(self, x: Tensor, t: Tensor | float) -> Tensor:
        """grad_x log p_t(x) = -sum_k r_k C_k^{-1}(x - alpha mu_k): (B, D)."""
        c = self._components(x, t)
        r = torch.softmax(c["log_joint"], dim=-1)
        return (-(r[..., None] * c["prec_diff"]).sum(1)).to(x.dtype)

    def data_prediction(self, x: Tensor, t: Tensor | float) -> Tensor:
        """E[z | x_t = x] = sum_k r_k (mu_k + alpha Sigma_k C_k^{-1}(x - alpha mu_k)): (B, D)."""
        c = self._components(x, t)
        return self._data(c).to(x.dtype)

    def _data(self, c: dict[str, Tensor]) -> Tensor:
        r = torch.softmax(c["log_joint"], dim=-1)
        cond = self._means[None] + c["a"][:, :, None] * torch.einsum("kij,bkj->bki", self._covs, c["prec_diff"])
        return (r[..., None] * cond).sum(1)

    def noise_prediction(self, x: Tensor, t: Tensor | float) -> Tensor:
        """E[eps | x_t = x] = -beta_t s_t(x): (B, D)."""
        c = self._components(x, t)
        r = torch.softmax(c["log_joint"], dim=-1)
        return (c["b"] * (r[..., None] * c["prec_diff"]).sum(1)).to(x.dtype)

    def velocity(self, x: Tensor, t: Tensor | float) -> Tensor:
        """u_t(x) = d_alpha E[z|x] + d_beta E[eps|x]: (B, D)."""
        c = self._components(x, t)
        r = torch.softmax(c["log_joint"], dim=-1)
        noise = c["b"] * (r[..., None] * c["prec_diff"]).sum(1)
        return (c["da"] * self._data(c) + c["db"] * noise).to(x.dtype)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        """The velocity, so an instance is a core `Field` (usable in LearnedVectorFieldODE)."""
        return self.velocity(x, t)

    def sample(self, t: Tensor | float, num_samples: int) -> Tensor:
        """x ~ p_t via the core path: data ~ mixture, then alpha_t data + beta_t noise: (n, D)."""
        data = self.mixture.sample(num_samples)
        return self.path.sample_conditional_path(data, batch_times(t, data))
