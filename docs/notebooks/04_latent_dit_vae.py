# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Latent flow matching: a VAE of our own, then a diffusion transformer on its latents
#
# The course's newest lab compresses images with a variational autoencoder, then trains a diffusion transformer
# (DiT) to generate in the small latent space; samples are decoded back to pixels. Here: the two pieces a student
# writes (the VAE's reparameterised KL loss, the DiT's patchify), the library's versions, and both trained with
# `imgflow.train`.
#
# Data: MNIST from `IMGFLOW_NOTEBOOK_DATA` (a folder in torchvision's layout, default `data`). Without it (and at
# `IMGFLOW_NOTEBOOK_SIZE=ci`), the digits come from the model shipped in the package, so the notebook runs offline.
# Full size: about 15 minutes on a CPU (3 minutes of VAE, 12 of DiT: the recipe measured in docs/latent.md);
# CI size: a few seconds with tiny networks.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[dev]"        (in Colab: !pip install -e /path/to/the/clone)
import imgflow

imgflow.require_version("0.2")

# %%
import io
import os

import einops
import torch
from IPython.display import display
from PIL import Image

from imgflow import Sampler, config_path, load_config, train
from imgflow.core.vae import gaussian_kl
from imgflow.data import ImageData, load_image_data
from imgflow.grids import image_grid_png
from imgflow.latents import load_autoencoder
from imgflow.nn.autoencoder import reconstructions

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
DATA = os.environ.get("IMGFLOW_NOTEBOOK_DATA", "data")

# %%
def shipped_digits(n: int) -> ImageData:
    """n digits (uint8, 10 classes in turn) drawn by the shipped flow-matching model: MNIST-like data offline."""
    samples = Sampler.from_pretrained("mnist").sample(n, steps=6 if SMALL else 20, batch_size=500)
    return ImageData(samples.to_uint8(), samples.labels)


try:
    if SMALL:
        raise FileNotFoundError("CI size: no dataset files")
    digits = load_image_data("mnist", DATA, train=True, download=False)
except (FileNotFoundError, OSError, ValueError) as reason:
    print(f"no MNIST here ({str(reason)[:80]}...): using digits drawn by the shipped model")
    digits = shipped_digits(64 if SMALL else 5_000)
print(f"{len(digits)} images of shape {tuple(digits.images.shape[1:])}")

# %% [markdown]
# ## The VAE
#
# The encoder outputs a mean and log-variance per latent; a latent is drawn as $z = \mu + \sigma \epsilon$ (the
# reparameterisation trick) and the loss is reconstruction + $\beta$ KL$(q(z \mid x)\,\|\,N(0, I))$. The KL term,
# by hand and from the library:

# %%
mean, logvar = torch.randn(4, 4, 7, 7), torch.randn(4, 4, 7, 7) * 0.1
mine = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum(dim=(1, 2, 3))
print("mine   ", mine.tolist(), "\nlibrary", gaussian_kl(mean, logvar).tolist())

# %%
vae_overrides = {"run.output_dir": "runs/vae", "train.sample_every": 0}
if SMALL:
    vae_overrides |= {"model.autoencoder.base_channels": 4, "train.steps": 4, "train.batch_size": 16,
                      "train.log_every": 2, "train.checkpoint_every": 4, "train.warmup_steps": 1}
else:
    vae_overrides |= {"train.max_minutes": 3}
train(load_config(config_path("vae_mnist"), vae_overrides), data=digits, progress=not SMALL)
codec = load_autoencoder("runs/vae")
print(f"images {codec.image_spec.shape} -> latents {codec.latent_shape}")
real = digits.images[:16].float() / 127.5 - 1
print("originals (top) and reconstructions (bottom):")
display(Image.open(io.BytesIO(image_grid_png(torch.cat([real, reconstructions(codec.autoencoder, real)]), nrow=16))))

# %% [markdown]
# ## The DiT
#
# A DiT cuts its input into patches, one token each, and runs a transformer whose every block is modulated by the
# time and class (adaLN). What you would write to patchify, with einops, against the library's `imgflow.nn.dit.DiT`
# (whose patch embedding is the equivalent strided convolution):

# %%
latents = torch.randn(2, 4, 8, 8)
tokens = einops.rearrange(latents, "b c (h p) (w q) -> b (h w) (c p q)", p=2, q=2)
print(f"latents {tuple(latents.shape)} -> {tokens.shape[1]} tokens of {tokens.shape[2]} numbers")

# %%
dit_overrides = {"run.output_dir": "runs/latent_dit", "data.autoencoder": "runs/vae", "train.sample_every": 0}
if SMALL:
    dit_overrides |= {"model.dit.hidden_size": 32, "model.dit.depth": 1, "model.dit.num_heads": 2, "train.steps": 4,
                      "train.batch_size": 16, "train.log_every": 2, "train.checkpoint_every": 4, "train.warmup_steps": 1}
else:
    dit_overrides |= {"train.max_minutes": 12}
train(load_config(config_path("mnist_latent_dit"), dit_overrides), data=digits, progress=not SMALL)

# %% [markdown]
# The latent checkpoint carries its autoencoder: the sampler generates latents and decodes them to images.

# %%
sampler = Sampler.from_checkpoint("runs/latent_dit")
samples = sampler.sample(20 if SMALL else 100, steps=4 if SMALL else 20)
print(f"latents of {sampler.latent_spec.shape} decoded to {tuple(samples.images.shape[1:])}; {samples.settings.describe()}")
display(samples.grid())
assert samples.images.shape[1:] == (1, 28, 28)
