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
# # Lab 6: train on your own images
#
# A folder with one sub-folder per class (`pets/cat/*.jpg`, `pets/dog/*.png`, ...; a folder of images alone trains
# an unconditional model) is a dataset: every image is resized once into a cache, then training reads the cache.
# Set `IMGFLOW_NOTEBOOK_IMAGES` to your folder; without it, this notebook draws a small folder of coloured shapes
# (circles, squares, triangles) so it runs anywhere. Then: train, look at the loss, sample by class name, load the
# checkpoint later, resume. There is no exercise here: this lab is the workflow for your own data.
#
# Run time: full size 255 s, CI size 0.9 s (measured 2026-12-07: `python` on a quiet 2-core AMD EPYC,
# AVX2 only; the CI size inside the test suite); the full size trains for 3.5 minutes
# (`train.max_minutes`), the CI size a tiny model for a few steps. Run as a script
# (`python docs/notebooks/06_your_own_images.py`), it saves every figure under `outputs/notebooks/lab6` and lists them;
# the run (checkpoints, loss log) goes to `outputs/notebooks/lab6/my_images`, the drawn images to `shapes/` in the
# working folder.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[notebooks]"        (in Colab: !pip install -e "/path/to/the/clone[notebooks]")
import imgflow

imgflow.require_version("0.2")

# %%
import os
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from imgflow import Sampler, config_path, load_config, train
from imgflow.core.grading import summary
from imgflow.display import print_saved, show, start_lab
from imgflow.training.metrics_log import read_metrics
from toy.plotting import plt

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
IMAGES = os.environ.get("IMGFLOW_NOTEBOOK_IMAGES")
OUT = start_lab("lab6")
RUN = OUT / "my_images"    # the training run: checkpoints, the loss log

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
classes = sorted(p.name for p in Path(IMAGES).iterdir() if p.is_dir())
print(f"training on {IMAGES}: {classes}, {sum(1 for _ in Path(IMAGES).rglob('*.png'))} PNG files")

# %% [markdown]
# ## Train
#
# `configs/folder32.toml` is the MNIST recipe at 32x32 RGB. Any key can be overridden, as on the command line
# (`python scripts/train_images.py --config configs/folder32.toml --data.folder.path PICS --train.max_minutes 5`).
# `train.max_minutes` counts the setup (resizing the images into the cache) as well as the steps.

# %%
overrides = {"data.folder.path": str(IMAGES), "run.output_dir": str(RUN), "train.sample_every": 0}
if SMALL:   # a tiny network at 16x16 for a few steps: enough to show every call, not to learn the shapes
    overrides |= {"data.image_size": 16, "model.unet.base_channels": 8, "model.unet.channel_mults": [1, 2],
                  "model.unet.attention_resolutions": [], "train.steps": 6, "train.batch_size": 8,
                  "train.log_every": 2, "train.checkpoint_every": 3, "train.warmup_steps": 1}
else:
    overrides |= {"train.max_minutes": 3.5}
config = load_config(config_path("folder32"), overrides)
result = train(config, progress=not SMALL)
print(f"stopped at step {result.step} ({result.stopped_by}); last checkpoint {result.last_checkpoint}")

# %%
logged = read_metrics(RUN)
fig = plt.figure(figsize=(5, 3))
plt.plot([row["step"] for row in logged], [row["loss"] for row in logged])
plt.xlabel("step")
plt.ylabel("flow-matching loss")
plt.yscale("log")
show(fig, "loss")
print(f"{len(logged)} logged losses: {logged[0]['loss']:.3f} at step {logged[0]['step']}, {logged[-1]['loss']:.3f} at step {logged[-1]['step']}")

# %% [markdown]
# ## Sample, by class name, now or later
#
# The run folder is all the sampler needs (`Sampler.from_checkpoint` rebuilds the network from the checkpoint's own
# record); `python scripts/sample_images.py outputs/notebooks/lab6/my_images --out shapes.png --classes circle,square`
# does the same from a shell.

# %%
sampler = Sampler.from_checkpoint(RUN)
print(sampler.class_names, sampler.image_shape, sampler.defaults.describe())
wanted = [classes[0], classes[-1]]   # the drawn shapes: circle and triangle
samples = sampler.sample(6 if SMALL else 30, labels=wanted, steps=4 if SMALL else 20)
show(samples, "_and_".join(wanted))
print(f"labels of the first samples for {wanted}:", samples.labels.tolist()[:4])
assert list(sampler.class_names) == classes    # the sub-folders, sorted
assert samples.images.shape[1:] == sampler.image_shape and samples.labels.tolist()[:2] == [0, len(classes) - 1]
print("with a hexagon folder too, the classes would be", sorted([*classes, "hexagon"]))
try:
    sampler.sample(2, labels=["hexagon"], steps=2)
except Exception as error:   # a name the folder did not have
    print(f"asking for 'hexagon': {type(error).__name__}: {error}")
else:
    raise AssertionError("an unknown class name should be refused")

# %% [markdown]
# **Question.** With the drawn shapes, the sampler was asked for `["circle", "triangle"]` and drew labels `[0, 2, ...]`. Where do those
# numbers come from, and what would change if your folder had a sub-folder `hexagon` too?

# %% [markdown]
# <details><summary>Answer</summary>
#
# The class names are the sub-folder names in sorted order, numbered from 0: `circle`, `square`, `triangle` are
# 0, 1, 2 (the `class_names` printed above), so `["circle", "triangle"]` is `[0, 2]`, repeated over the batch. The
# run's checkpoint stores that list, which is why `Sampler.from_checkpoint` can sample by name later, and why a name
# it never saw is refused with the known names (the error printed above). A `hexagon` folder would sort between
# `circle` and `square` (the list printed above) and become class 1: `square` and `triangle` would move to 2 and 3,
# so the numbers would mean other shapes than in a checkpoint trained before, and the network would have one more
# class to learn from the same budget. Rename or add folders before training, not after.
#
# </details>

# %% [markdown]
# Resuming continues from the latest checkpoint (weights, optimiser, EMA and the data order, all saved in it): here a
# few more steps than the run had.

# %%
extra = 2 if SMALL else 50
more = load_config(config_path("folder32"), {**overrides, "train.steps": result.step + extra, "train.max_minutes": 0})
resumed = train(more, resume="latest", progress=not SMALL)
print(f"resumed from step {result.step}, stopped at step {resumed.step} ({resumed.stopped_by})")
assert resumed.step == result.step + extra

# %%
summary()
print_saved();
