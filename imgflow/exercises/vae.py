"""The VAE lab's graders: the reparameterised sample of q(z | x) and its KL divergence to N(0, I).

References: the sample is `imgflow.nn.autoencoder.KLAutoencoder.forward`'s z = mean + exp(logvar / 2) eps with the
noise eps given (tests/test_exercises_networks.py checks that it is the autoencoder's own line), the KL is
`imgflow.core.vae.gaussian_kl`, summed over every latent number of a sample.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.core.grading import Case, CheckResult, grade
from imgflow.core.vae import gaussian_kl

__all__ = ["check_gaussian_kl", "check_reparameterise"]

#: a few float32 operations on O(1) numbers
SAMPLE_ATOL, SAMPLE_RTOL = 1e-5, 1e-4
#: a float32 sum of a few hundred terms of size ~1: rounding ~1e-5 relative
KL_ATOL, KL_RTOL = 1e-4, 1e-4


def _posterior(seed: int, shape: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """(mean, logvar) of a latent posterior: logvar spread over [-3, 1], so exp(logvar) and exp(logvar / 2) differ."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.rand(shape, generator=g) * 4 - 3


def reparameterise_reference(mean: Tensor, logvar: Tensor, eps: Tensor) -> Tensor:
    """z = mean + sigma eps with sigma = exp(logvar / 2): a draw of N(mean, exp(logvar)) that is differentiable in both."""
    return mean + torch.exp(0.5 * logvar) * eps


def check_reparameterise(reparameterise: Callable[[Tensor, Tensor, Tensor], Tensor]) -> CheckResult:
    """reparameterise(mean, logvar, eps) -> mean + exp(logvar / 2) eps, all (B, c, h, w), eps ~ N(0, I) given."""
    cases = []
    for seed, shape in ((0, (3, 4, 7, 7)), (1, (2, 2, 3, 3))):
        mean, logvar = _posterior(seed, shape)
        eps = torch.randn(shape, generator=torch.Generator().manual_seed(seed + 10))
        cases.append(Case((mean, logvar, eps), reparameterise_reference(mean, logvar, eps), mistakes={
            "exp(logvar) (the variance) where exp(logvar / 2) (the standard deviation) goes": mean + logvar.exp() * eps,
            "the noise without its scale (mean + eps)": mean + eps,
            "logvar used as the standard deviation (mean + logvar eps)": mean + logvar * eps,
            "exp(-logvar / 2): one over the standard deviation": mean + torch.exp(-0.5 * logvar) * eps,
            "the mean alone (no noise)": mean}, start=mean))
    return grade("reparameterised sample", reparameterise, cases, atol=SAMPLE_ATOL, rtol=SAMPLE_RTOL)


def check_gaussian_kl(kl: Callable[[Tensor, Tensor], Tensor]) -> CheckResult:
    """kl(mean, logvar) -> (B,) KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar), the
    sum over every latent number of a sample; the reference is imgflow.core.vae.gaussian_kl."""
    cases = []
    for seed, shape in ((2, (4, 4, 7, 7)), (3, (3, 2, 4, 4))):
        mean, logvar = _posterior(seed, shape)
        per_number = mean**2 + logvar.exp() - 1 - logvar
        cases.append(Case((mean, logvar), gaussian_kl(mean, logvar), mistakes={
            "the 1/2 is missing": per_number.flatten(1).sum(1),
            "logvar with the wrong sign (+ logvar where - logvar goes)": 0.5 * (mean**2 + logvar.exp() - 1 + logvar).flatten(1).sum(1),
            "exp(-logvar) where exp(logvar) goes": 0.5 * (mean**2 + (-logvar).exp() - 1 - logvar).flatten(1).sum(1),
            "the mean over the latent numbers instead of their sum": 0.5 * per_number.flatten(1).mean(1),
            "the - 1 left out": 0.5 * (mean**2 + logvar.exp() - logvar).flatten(1).sum(1)}))
    return grade("KL to N(0, I)", kl, cases, atol=KL_ATOL, rtol=KL_RTOL)
