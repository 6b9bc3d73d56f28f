"""A diffusers `AutoencoderKL` (the Stable Diffusion VAE and its kin) as the network of a latent codec.

    data.autoencoder = "stabilityai/sd-vae-ft-ema"     # a Hub repo id (fetched into the Hub cache), or
    data.autoencoder = "vaes/sd-vae-ft-ema"            # a local folder written by AutoencoderKL.save_pretrained

diffusers is optional (`pip install -e ".[diffusers]"`). The VAE runs in float32 whatever the training precision
(SDXL's VAE overflows in float16: diffusers' own `force_upcast`), and encodes to its posterior mean, as imgflow's
own autoencoder does (DiT samples the posterior instead). Shift and scale are the VAE config's, used as written:

    z = (mean - shift_factor) * scaling_factor                    (shift_factor 0 when absent: SD 1.x/2.x, SDXL)
    z = (mean - latents_mean[c]) * scaling_factor / latents_std[c] (per channel, where the config has both)

The weights' digest (imgflow.digests, of the float32 state dict) keys the latent cache and is recorded in every
checkpoint of a latent run, with where the VAE came from; a sampler loads it from there and checks the digest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from imgflow.errors import CheckpointError, ConfigError
from imgflow.hub import is_repo_id, snapshot

CLASS_NAME = "AutoencoderKL"
#: what a VAE's repo needs: its config and safetensors weights (a repo may hold .bin and fp16 variants too)
VAE_PATTERNS = ["config.json", "diffusion_pytorch_model.safetensors"]
INSTALL = 'pip install -e ".[diffusers]" (or pip install diffusers)'


def is_diffusers_vae(path: str | Path) -> bool:
    """Whether `path` is a folder whose config.json describes a diffusers AutoencoderKL."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and json.loads(config.read_text()).get("_class_name") == CLASS_NAME
    except (OSError, ValueError, AttributeError):
        return False


def vae_folder(reference: str, key: str = "data.autoencoder") -> Path | None:
    """The local folder of a diffusers VAE named by a path or a Hub repo id, or None when `reference` names something else
    (an imgflow autoencoder's checkpoint or run folder)."""
    path = Path(reference).expanduser()
    if path.exists():
        return path if is_diffusers_vae(path) else None
    if is_repo_id(reference):
        folder = snapshot(reference, allow_patterns=VAE_PATTERNS, what="VAE")
        if not is_diffusers_vae(folder):
            raise ConfigError(f"{key} = {reference!r}: the Hub repo has no config.json of an {CLASS_NAME} at its top (a pipeline "
                              "repo keeps its VAE in a vae/ subfolder: save that subfolder locally and point at it)")
        return folder
    return None


def scaling_from_config(config: dict[str, Any]) -> tuple[float | tuple[float, ...], float | tuple[float, ...]]:
    """(shift, scale) with z = (mean - shift) * scale, from a VAE config as written (module docstring)."""
    factor = float(config.get("scaling_factor") if config.get("scaling_factor") is not None else 0.18215)
    mean, std = config.get("latents_mean"), config.get("latents_std")
    if mean is not None and std is not None:
        if len(mean) != len(std) or any(float(s) <= 0 for s in std):
            raise ConfigError(f"the VAE config's latents_mean {list(mean)} and latents_std {list(std)} must be one positive std per "
                              "latent channel; fix its config.json")
        return tuple(float(m) for m in mean), tuple(factor / float(s) for s in std)
    return float(config.get("shift_factor") or 0.0), factor


class DiffusersVAE(nn.Module):
    """An AutoencoderKL behind imgflow's autoencoder interface: encode(x) -> (mean, logvar), decode(z) -> images, with
    `factor` (the downsampling) and `latent_shape` at the given image size. Always float32, never trained."""

    def __init__(self, vae: nn.Module, image_size: int) -> None:
        super().__init__()
        self.vae = vae.float().eval().requires_grad_(False)
        self.factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.in_channels = int(vae.config.in_channels)
        side = image_size // self.factor
        self.latent_shape = (int(vae.config.latent_channels), side, side)

    def encode(self, images: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(images.device.type, enabled=False):
            posterior = self.vae.encode(images.float()).latent_dist
        return posterior.mean, posterior.logvar

    def decode(self, latents: Tensor) -> Tensor:
        with torch.autocast(latents.device.type, enabled=False):
            return self.vae.decode(latents.float()).sample


def load_vae(folder: Path, key: str = "data.autoencoder") -> nn.Module:
    """The AutoencoderKL saved in `folder`, in float32; one ConfigError for a missing diffusers or unreadable weights."""
    try:
        from diffusers import AutoencoderKL
    except ImportError:
        raise ConfigError(f"{key} = {str(folder)!r} is a diffusers {CLASS_NAME}, and diffusers is not installed: {INSTALL}") from None
    if not (folder / "diffusion_pytorch_model.safetensors").is_file():
        raise CheckpointError(f"{folder} has no diffusion_pytorch_model.safetensors (imgflow reads a VAE's safetensors weights only; "
                              "a partial download?); fetch it again or save it with AutoencoderKL.save_pretrained")
    try:
        return AutoencoderKL.from_pretrained(str(folder), torch_dtype=torch.float32)
    except (OSError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"the {CLASS_NAME} in {folder} cannot be loaded ({str(exc).splitlines()[0][:140]}); fetch or save it "
                              "again") from None


def vae_config(vae: nn.Module) -> dict[str, Any]:
    """The config keys a latent record keeps of a VAE (what decides its shapes and scaling)."""
    keys = ("in_channels", "out_channels", "latent_channels", "block_out_channels", "scaling_factor", "shift_factor",
            "latents_mean", "latents_std")
    return {k: (list(v) if isinstance(v, tuple) else v) for k in keys if (v := vae.config.get(k)) is not None}


__all__ = ["CLASS_NAME", "INSTALL", "VAE_PATTERNS", "DiffusersVAE", "is_diffusers_vae", "load_vae", "scaling_from_config", "vae_config",
           "vae_folder"]
