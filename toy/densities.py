"""2-D densities you can sample and (where it exists) score.

Every density draws ``sample(n) -> (n, 2)``. Those with a closed-form density also give
``log_density(x) -> (B,)`` and ``score(x) = grad_x log p(x) -> (B, 2)``; the score is taken
by autograd of ``log_density`` so the two can never disagree. Sample-only densities
(Moons, Circles) raise ``NotImplementedError`` from ``log_density``/``score``.

Seeding: pass ``seed=`` to make a density own a ``torch.Generator`` (its draws are then
reproducible and independent of the global RNG); without one it uses the global RNG, so
``torch.manual_seed`` controls it. ``sample(n, generator=g)`` overrides both.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "Checkerboard",
    "Circles",
    "Density",
    "Gaussian",
    "GaussianMixture",
    "Moons",
]


class Density:
    """Base class: seeded sampling plus an autograd score of ``log_density``."""

    dim: int = 2

    def __init__(self, seed: int | None = None) -> None:
        self.generator = torch.Generator().manual_seed(int(seed)) if seed is not None else None

    # --- interface ----------------------------------------------------------------------
    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Draw (num_samples, dim) float32 samples."""
        raise NotImplementedError

    def log_density(self, x: Tensor) -> Tensor:
        """log p(x) for x (B, dim): (B,)."""
        raise NotImplementedError(f"{type(self).__name__} is sample-only: it has no closed-form density")

    def score(self, x: Tensor) -> Tensor:
        """grad_x log p(x) for x (B, dim): (B, dim), by autograd of ``log_density``."""
        with torch.enable_grad():
            xr = x.detach().clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(self.log_density(xr).sum(), xr)
        return grad.detach()

    # --- helpers ------------------------------------------------------------------------
    def _gen(self, generator: torch.Generator | None) -> torch.Generator | None:
        return generator if generator is not None else self.generator

    def _randn(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(*shape, generator=self._gen(generator))

    def _rand(self, *shape: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.rand(*shape, generator=self._gen(generator))


class Gaussian(Density):
    """N(mean, cov) in any dimension: mean (D,), cov (D, D) symmetric positive definite."""

    def __init__(self, mean: Tensor, cov: Tensor, seed: int | None = None) -> None:
        super().__init__(seed)
        self.mean = torch.as_tensor(mean, dtype=torch.float32)
        self.cov = torch.as_tensor(cov, dtype=torch.float32)
        self.dim = self.mean.shape[0]
        self._chol = torch.linalg.cholesky(self.cov.double())

    @classmethod
    def isotropic(cls, dim: int = 2, std: float = 1.0, seed: int | None = None) -> Gaussian:
        """N(0, std^2 I_dim)."""
        return cls(torch.zeros(dim), std**2 * torch.eye(dim), seed=seed)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """x = mean + L eps with cov = L L^T: (n, D)."""
        eps = self._randn(num_samples, self.dim, generator=generator).double()
        return (self.mean.double() + eps @ self._chol.T).float()

    def log_density(self, x: Tensor) -> Tensor:
        """-1/2 (x - m)^T cov^{-1} (x - m) - 1/2 log det(2 pi cov): (B,)."""
        L = self._chol.to(x.dtype)
        diff = (x - self.mean.to(x.dtype)).unsqueeze(-1)
        sol = torch.linalg.solve_triangular(L, diff, upper=False).squeeze(-1)
        logdet = 2.0 * torch.log(torch.diagonal(L)).sum()
        return -0.5 * sol.pow(2).sum(-1) - 0.5 * logdet - 0.5 * self.dim * math.log(2 * math.pi)


class GaussianMixture(Density):
    """sum_k w_k N(mu_k, Sigma_k): means (K, D), covs (K, D, D), weights (K,) (normalised here)."""

    def __init__(self, means: Tensor, covs: Tensor, weights: Tensor | None = None, seed: int | None = None) -> None:
        super().__init__(seed)
        self.means = torch.as_tensor(means, dtype=torch.float32)
        self.covs = torch.as_tensor(covs, dtype=torch.float32)
        k, d = self.means.shape
        if self.covs.shape != (k, d, d):
            raise ValueError(f"covs must be (K, D, D) = {(k, d, d)}, got {tuple(self.covs.shape)}")
        w = torch.ones(k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        if torch.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights must be non-negative with a positive sum")
        self.weights = w / w.sum()
        self.dim = d
        self._chols = torch.linalg.cholesky(self.covs.double())
        self._inv_chols = torch.linalg.inv(self._chols)  # (K, D, D), lower triangular
        logdet = 2.0 * torch.log(torch.diagonal(self._chols, dim1=-2, dim2=-1)).sum(-1)
        self._log_norm = torch.log(self.weights.double()) - 0.5 * logdet - 0.5 * d * math.log(2 * math.pi)

    @property
    def num_modes(self) -> int:
        return self.means.shape[0]

    def mean(self) -> Tensor:
        """E[X] = sum_k w_k mu_k: (D,)."""
        return (self.weights[:, None] * self.means).sum(0)

    def covariance(self) -> Tensor:
        """Cov[X] = sum_k w_k (Sigma_k + mu_k mu_k^T) - E[X] E[X]^T: (D, D)."""
        m = self.mean()
        second = (self.weights[:, None, None] * (self.covs + self.means[:, :, None] * self.means[:, None, :])).sum(0)
        return second - m[:, None] * m[None, :]

    @classmethod
    def random_2D(cls, nmodes: int, std: float, scale: float = 10.0, seed: int = 0) -> GaussianMixture:
        """Equal-weight isotropic modes of std `std`, means uniform in [-scale/2, scale/2]^2 (seeded)."""
        g = torch.Generator().manual_seed(int(seed))
        means = (torch.rand(nmodes, 2, generator=g) - 0.5) * scale
        covs = torch.diag_embed(torch.full((nmodes, 2), float(std) ** 2))
        return cls(means, covs, torch.ones(nmodes), seed=seed)

    @classmethod
    def symmetric_2D(cls, nmodes: int, std: float, scale: float = 10.0, seed: int | None = None) -> GaussianMixture:
        """Equal-weight isotropic modes of std `std` at angles 2 pi k / nmodes on a circle of radius `scale`."""
        angles = torch.arange(nmodes, dtype=torch.float64) * (2 * math.pi / nmodes)
        means = (scale * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)).float()
        covs = torch.diag_embed(torch.full((nmodes, 2), float(std) ** 2))
        return cls(means, covs, torch.ones(nmodes), seed=seed)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        """Pick a component k ~ w, then mu_k + L_k eps: (n, D)."""
        return self.sample_with_labels(num_samples, generator)[0]

    def sample_with_labels(self, num_samples: int, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Samples (n, D) and the component each came from (n,) int64: labelled data for class-conditional models."""
        g = self._gen(generator)
        k = torch.multinomial(self.weights, num_samples, replacement=True, generator=g)
        eps = torch.randn(num_samples, self.dim, generator=g).double()
        x = self.means.double()[k] + torch.einsum("nij,nj->ni", self._chols[k], eps)
        return x.float(), k

    def component_log_densities(self, x: Tensor) -> Tensor:
        """log w_k + log N(x; mu_k, Sigma_k): (B, K)."""
        diff = x[:, None, :] - self.means.to(x.dtype)[None]  # (B, K, D)
        sol = torch.einsum("kij,bkj->bki", self._inv_chols.to(x.dtype), diff)  # L_k^{-1} (x - mu_k)
        return self._log_norm.to(x.dtype) - 0.5 * sol.pow(2).sum(-1)

    def log_density(self, x: Tensor) -> Tensor:
        """log sum_k w_k N(x; mu_k, Sigma_k) by logsumexp: (B,)."""
        return torch.logsumexp(self.component_log_densities(x), dim=-1)


class Moons(Density):
    """Two interleaved half circles (scikit-learn's make_moons, re-implemented), scaled and centred.

    Unit-scale moons: (cos a, sin a) and (1 - cos a, 1/2 - sin a), a ~ U[0, pi], plus
    N(0, noise^2) per coordinate; then shifted to mean ~ 0 and multiplied by `scale`.
    Sample-only.
    """

    def __init__(self, noise: float = 0.05, scale: float = 5.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.noise, self.scale = float(noise), float(scale)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        g = self._gen(generator)
        a = torch.rand(num_samples, generator=g) * math.pi
        upper = torch.rand(num_samples, generator=g) < 0.5
        x = torch.where(upper, torch.cos(a), 1.0 - torch.cos(a))
        y = torch.where(upper, torch.sin(a), 0.5 - torch.sin(a))
        pts = torch.stack([x - 0.5, y - 0.25], dim=1)
        pts = pts + self.noise * torch.randn(num_samples, 2, generator=g)
        return self.scale * pts


class Circles(Density):
    """Two concentric circles of radii 1 and `factor` (scikit-learn's make_circles), times `scale`.

    Points: r (cos a, sin a) with r in {1, factor} equally likely, a ~ U[0, 2 pi), plus
    N(0, noise^2) per coordinate, then multiplied by `scale`. Sample-only.
    """

    def __init__(self, noise: float = 0.05, factor: float = 0.5, scale: float = 5.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.noise, self.factor, self.scale = float(noise), float(factor), float(scale)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        g = self._gen(generator)
        a = torch.rand(num_samples, generator=g) * (2 * math.pi)
        r = torch.where(torch.rand(num_samples, generator=g) < 0.5, 1.0, self.factor)
        pts = r[:, None] * torch.stack([torch.cos(a), torch.sin(a)], dim=1)
        pts = pts + self.noise * torch.randn(num_samples, 2, generator=g)
        return self.scale * pts


class Checkerboard(Density):
    """Uniform on the 'black' cells of a grid_size x grid_size board covering [-scale, scale]^2.

    Cell (i, j) (i along x, j along y, counted from the lower-left corner) is black when i + j
    is even. Sampling is exact and batched (pick a black cell uniformly, then a uniform point
    in it). The density is piecewise constant: log(1 / black area) on black cells, -inf
    elsewhere; its score is zero almost everywhere and undefined on the edges, so `score`
    raises.
    """

    def __init__(self, grid_size: int = 4, scale: float = 4.0, seed: int | None = None) -> None:
        super().__init__(seed)
        self.grid_size, self.scale = int(grid_size), float(scale)
        self.cell = 2 * self.scale / self.grid_size
        ij = torch.cartesian_prod(torch.arange(self.grid_size), torch.arange(self.grid_size))
        self.black_cells = ij[(ij.sum(1) % 2) == 0]  # (M, 2)

    def sample(self, num_samples: int, generator: torch.Generator | None = None) -> Tensor:
        g = self._gen(generator)
        idx = torch.randint(len(self.black_cells), (num_samples,), generator=g)
        corner = self.black_cells[idx].float() * self.cell - self.scale
        return corner + self.cell * torch.rand(num_samples, 2, generator=g)

    def is_black(self, x: Tensor) -> Tensor:
        """Boolean (B,): x lies in a black cell inside the board."""
        ij = torch.floor((x + self.scale) / self.cell)
        inside = ((ij >= 0) & (ij < self.grid_size)).all(-1)
        return inside & ((ij.sum(-1) % 2) == 0)

    def log_density(self, x: Tensor) -> Tensor:
        """-log(number of black cells * cell area) on black cells, -inf elsewhere: (B,)."""
        value = -math.log(len(self.black_cells) * self.cell**2)
        out = torch.full(x.shape[:1], value, dtype=x.dtype, device=x.device)
        return torch.where(self.is_black(x), out, torch.full_like(out, -math.inf))

    def score(self, x: Tensor) -> Tensor:
        raise NotImplementedError("the checkerboard density is piecewise constant: its score is 0 or undefined")
