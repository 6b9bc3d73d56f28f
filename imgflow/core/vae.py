"""The loss of a KL-regularised autoencoder (a beta-VAE with a Gaussian posterior), written once.

    loss(x) = [ sum_pixels rho(decode(z) - x) + beta * KL(q(z | x) || N(0, I)) ] / D,   z ~ q(z | x),

with rho the squared (L2) or absolute (L1) error and D the number of pixel values per image, so the
reconstruction part is the per-pixel mean error and beta is in units of it (comparable across image
sizes). With L2 and beta = 1 this is the negative ELBO of a Gaussian decoder with variance 1/2, up to
constants; latent-diffusion autoencoders use beta of 1e-6 to 1e-3 (a nearly deterministic code whose
scale the KL term keeps in check).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

RECONSTRUCTIONS = ("l2", "l1")


def gaussian_kl(mean: Tensor, logvar: Tensor) -> Tensor:
    """(B,) KL(N(mean, exp(logvar)) || N(0, I)) = 1/2 sum(mean^2 + exp(logvar) - 1 - logvar) over non-batch dims."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).flatten(1).sum(1)


def reconstruction_error(reconstruction: Tensor, target: Tensor, kind: str = "l2") -> Tensor:
    """(B,) per-pixel mean squared ('l2') or absolute ('l1') error."""
    if kind not in RECONSTRUCTIONS:
        raise ValueError(f"unknown reconstruction error {kind!r}; use one of {', '.join(RECONSTRUCTIONS)}")
    diff = (reconstruction.float() - target.float()).flatten(1)
    return diff.square().mean(1) if kind == "l2" else diff.abs().mean(1)


@dataclass
class VAELoss:
    """Per-sample parts of the loss above, each (B,): `total` = `reconstruction` + beta * `kl` / D."""

    total: Tensor
    reconstruction: Tensor
    kl: Tensor


def vae_loss(reconstruction: Tensor, target: Tensor, mean: Tensor, logvar: Tensor, beta: float, kind: str = "l2") -> VAELoss:
    """The loss of the module docstring for a batch: target (B, C, H, W) images, mean/logvar (B, c, h, w) of q(z | x)."""
    rec = reconstruction_error(reconstruction, target, kind)
    kl = gaussian_kl(mean.float(), logvar.float())
    return VAELoss(rec + beta * kl / target[0].numel(), rec, kl)
