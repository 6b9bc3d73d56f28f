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
# # Lab 3: classifier-free guidance, on a 2-D mixture and on MNIST
#
# A class-conditional model $u_\theta(x, t, y)$ is trained with a share of its labels replaced by a "null" label
# (label dropout), so the same network is also unconditional. Sampling follows the guided field
# $(1 - w)\,u_\theta(x, t, \varnothing) + w\,u_\theta(x, t, y)$: $w = 1$ is the conditional model, $w > 1$ pushes
# samples towards what makes them look like their class. First on three overlapping 2-D modes, then on MNIST with
# the model that ships inside the package (no training).
#
# Full size: about two minutes on a CPU; `IMGFLOW_NOTEBOOK_SIZE=ci` runs it in seconds.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[dev]"        (in Colab: !pip install -e /path/to/the/clone)
import imgflow

imgflow.require_version("0.2")

# %%
import os

import torch
from IPython.display import display

from imgflow import Sampler, pretrained_path
from imgflow.core import (
    ClassifierFreeGuidance,
    GaussianPath,
    LearnedVectorFieldODE,
    flow_matching_loss,
    make_solver,
    schedule_from_name,
    uniform_time_grid,
)
from imgflow.evaluation.classifier import load_classifier, predict
from imgflow.nn.embeddings import drop_labels
from toy import GaussianMixture, MLPConditionalField
from toy.plotting import contour, plt, scatter, subplots

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
ITERATIONS = 300 if SMALL else 3_000
N = 600 if SMALL else 3_000
torch.manual_seed(0)

# %% [markdown]
# ## Three overlapping modes
#
# The labels are the mixture's components. What you would write for label dropout is one line, the right way
# round: a label is *replaced by the null label* with probability $p$ (the library's `drop_labels`; the image
# trainer uses its two pieces, `label_drop_mask` and `apply_label_drop`):

# %%
mixture = GaussianMixture.symmetric_2D(nmodes=3, std=1.0, scale=2.0)
path = GaussianPath(schedule_from_name("linear"))
model = MLPConditionalField(dim=2, num_classes=3)
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
P_DROP = 0.2

y = torch.tensor([0, 1, 2, 0, 1, 2])
mine = torch.where(torch.rand(6, generator=torch.Generator().manual_seed(5)) < P_DROP, model.null_label, y)
library = drop_labels(y, P_DROP, model.null_label, generator=torch.Generator().manual_seed(5))
print("mine   ", mine.tolist(), "\nlibrary", library.tolist())

for _ in range(ITERATIONS):
    data, labels = mixture.sample_with_labels(500)
    labels = drop_labels(labels, P_DROP, model.null_label)
    loss = flow_matching_loss(model, path, data, torch.rand(500), model_kwargs={"y": labels})
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"final loss {loss.item():.3f}")

# %% [markdown]
# Sample class 0 at $w = 1, 3, 5$ with the core's `ClassifierFreeGuidance` (one guided evaluation = one NFE).
# The share of samples nearest to their own mode's centre grows with $w$, and the samples leave the overlap:

# %%
def guided_samples(label: int, w: float, n: int) -> torch.Tensor:
    y = torch.full((n,), label)
    guided = ClassifierFreeGuidance(model, y, w, null_label=model.null_label)
    field = LearnedVectorFieldODE(lambda x, t: guided(x, t))
    return make_solver("euler", field).simulate(torch.randn(n, 2), uniform_time_grid(50)).detach()


def share_nearest(x: torch.Tensor, label: int) -> float:
    return float((torch.cdist(x, mixture.means).argmin(1) == label).float().mean())


fig, axes = subplots(3, size=3.3)
shares = {}
with torch.no_grad():
    for ax, w in zip(axes, (1.0, 3.0, 5.0)):
        x = guided_samples(0, w, N)
        shares[w] = share_nearest(x, 0)
        contour(ax, mixture.log_density, (-6, 6, -6, 6))
        scatter(ax, x, s=2, color="tab:red")
        ax.set(title=f"class 0, w = {w:g}: {shares[w]:.0%} nearest")
plt.show()
assert shares[3.0] > shares[1.0] and shares[5.0] > shares[1.0]

# %% [markdown]
# ## MNIST with the shipped model
#
# `Sampler.from_pretrained("mnist")` loads a small class-conditional U-Net that ships inside the package (EMA
# weights in float16, 1.39 MB); `pretrained_path("mnist-classifier")` is the project's classifier, which
# says how many samples look like the digit they were asked for.

# %%
sampler = Sampler.from_pretrained("mnist")
classifier, _ = load_classifier(pretrained_path("mnist-classifier"))
num, steps = (20, 8) if SMALL else (100, 20)
accuracy = {}
for w in (1.0, 3.0, 5.0):
    samples = sampler.sample(num, guidance=w, steps=steps, seed=0)   # labels 0..9 in turn, one class per column
    accuracy[w] = float((predict(classifier, samples.images) == samples.labels).float().mean())
    print(f"w = {w:g}: {samples.nfe} NFE, {samples.seconds:.1f} s, class accuracy {accuracy[w]:.0%}")
    display(samples.grid())
assert accuracy[3.0] >= 0.8
