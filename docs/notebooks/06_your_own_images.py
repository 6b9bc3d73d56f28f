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
# # Train on your own images
#
# A folder with one sub-folder per class (`pets/cat/*.jpg`, `pets/dog/*.png`, ...; a folder of images alone trains
# an unconditional model) is a dataset: every image is resized once into a cache, then training reads the cache.
# Set `IMGFLOW_NOTEBOOK_IMAGES` to your folder; without it, this notebook draws a small folder of coloured shapes
# (circles, squares, triangles) so it runs anywhere. Then: train, look at the loss, sample by class name, load the
# checkpoint later, resume.
#
# Full size: 5 minutes of training on a CPU (`train.max_minutes`); `IMGFLOW_NOTEBOOK_SIZE=ci` trains a tiny model
# for a few steps.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[dev]"        (in Colab: !pip install -e /path/to/the/clone)
import imgflow

imgflow.require_version("0.2")

# %%
import os
from pathlib import Path

import torch
from IPython.display import display
from PIL import Image, ImageDraw

from imgflow import Sampler, config_path, load_config, train
from imgflow.training.metrics_log import read_metrics
from toy.plotting import plt

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
IMAGES = os.environ.get("IMGFLOW_NOTEBOOK_IMAGES")

# %%
def draw_shapes(root: Path, per_class: int, size: int = 48, seed: int = 0) -> Path:
    """A folder of `per_class` images per class (circle, square, triangle) of random colour, place and size."""
    g = torch.Generator().manual_seed(seed)
    for shape in ("circle", "square", "triangle"):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            r, cx, cy = (torch.rand(3, generator=g) * torch.tensor([0.2, 0.4, 0.4]) + torch.tensor([0.2, 0.3, 0.3])).mul(size).tolist()
            colour = tuple(int(c) for c in torch.randint(60, 256, (3,), generator=g))
            image = Image.new("RGB", (size, size), (20, 20, 30))
            pen = ImageDraw.Draw(image)
            box = (cx - r, cy - r, cx + r, cy + r)
            if shape == "circle":
                pen.ellipse(box, fill=colour)
            elif shape == "square":
                pen.rectangle(box, fill=colour)
            else:
                pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
            image.save(root / shape / f"{i:04d}.png")
    return root


if IMAGES is None:
    IMAGES = draw_shapes(Path("shapes"), per_class=20 if SMALL else 600)
print(f"training on {IMAGES}: {sorted(p.name for p in Path(IMAGES).iterdir() if p.is_dir())}")

# %% [markdown]
# ## Train
#
# `configs/folder32.toml` is the MNIST recipe at 32x32 RGB. Any key can be overridden, as on the command line
# (`python scripts/train_images.py --config configs/folder32.toml --data.folder.path PICS --train.max_minutes 5`).

# %%
overrides = {"data.folder.path": str(IMAGES), "run.output_dir": "runs/my_images", "train.sample_every": 0}
if SMALL:   # a tiny network at 16x16 for a few steps: enough to show every call, not to learn the shapes
    overrides |= {"data.image_size": 16, "model.unet.base_channels": 8, "model.unet.channel_mults": [1, 2],
                  "model.unet.attention_resolutions": [], "train.steps": 6, "train.batch_size": 8,
                  "train.log_every": 2, "train.checkpoint_every": 3, "train.warmup_steps": 1}
else:
    overrides |= {"train.max_minutes": 5}
config = load_config(config_path("folder32"), overrides)
result = train(config, progress=not SMALL)
print(f"stopped at step {result.step} ({result.stopped_by}); last checkpoint {result.last_checkpoint}")

# %%
logged = read_metrics(Path("runs/my_images"))
plt.figure(figsize=(5, 3))
plt.plot([row["step"] for row in logged], [row["loss"] for row in logged])
plt.xlabel("step")
plt.ylabel("flow-matching loss")
plt.yscale("log")
plt.show()

# %% [markdown]
# ## Sample, by class name, now or later
#
# The run folder is all the sampler needs (`Sampler.from_checkpoint` rebuilds the network from the checkpoint's own
# record); `python scripts/sample_images.py runs/my_images --out shapes.png --classes circle,square` does the same
# from a shell.

# %%
sampler = Sampler.from_checkpoint("runs/my_images")
print(sampler.class_names, sampler.image_shape, sampler.defaults.describe())
samples = sampler.sample(6 if SMALL else 30, labels=["circle", "triangle"], steps=4 if SMALL else 20)
display(samples.grid())
assert samples.images.shape[1:] == sampler.image_shape and samples.labels.tolist()[:2] == [0, 2]

# %% [markdown]
# Resuming continues bit-exactly from the latest checkpoint (here: more steps than the run had):

# %%
more = load_config(config_path("folder32"), {**overrides, "train.steps": result.step + (2 if SMALL else 100),
                                                "train.max_minutes": 0})
print(train(more, resume="latest", progress=not SMALL).step)
