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
# $\varnothing$ (label dropout), so the same network is also unconditional. Sampling follows the guided field
# $(1 - w)\,u_\theta(x, t, \varnothing) + w\,u_\theta(x, t, y)$: $w = 1$ is the conditional model, $w > 1$ pushes
# samples towards what makes them look like their class. First on three overlapping 2-D modes, then on MNIST with
# the model that ships inside the package (no training).
#
# You write label dropout, the guidance trainer's loss of one batch, the guided field and one residual layer of the
# course's U-Net; each is checked at once by a grader that says what differs, and the library's versions then do
# the training and sampling, so the lab runs on whether or not you have done an exercise. Open
# `docs/notebooks/student/03_guidance.ipynb` to do the exercises; this notebook has the solutions.
#
# Run time: full size 50 s, CI size 4.7 s (measured 2026-12-07: `python` on a quiet 2-core AMD EPYC,
# AVX2 only; the CI size inside the test suite). Run as a script
# (`python docs/notebooks/03_guidance.py`), it saves every figure under `outputs/notebooks/lab3` and lists them.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[notebooks]"        (in Colab: !pip install -e "/path/to/the/clone[notebooks]")
import imgflow

imgflow.require_version("0.2")

# %%
import os

import torch

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
from imgflow.display import print_saved, show, start_lab
from imgflow.evaluation.classifier import load_classifier, predict
from imgflow.exercises import check_residual_layer
from imgflow.nn.embeddings import apply_label_drop, drop_labels, label_drop_mask
from toy import GaussianMixture, MLPConditionalField
from toy.exercises import check_cfg_loss, check_drop_labels, check_guided_velocity, summary
from toy.plotting import contour, scatter, subplots

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
ITERATIONS = 300 if SMALL else 3_000
N = 600 if SMALL else 3_000
OUT = start_lab("lab3")
torch.manual_seed(0);

# %% [markdown]
# ## Three overlapping modes
#
# The labels are the mixture's components $y \in \{0, 1, 2\}$; the null label is $\varnothing = 3$ (one more row in
# the model's label embedding).
#
# ### Exercise 1: label dropout
#
# During training each label is replaced by the null label with probability $p$, independently. With one uniform
# draw $u \sim U[0, 1)$ per label given, that is: the label becomes $\varnothing$ where $u < p$ (which happens with
# probability $p$), and stays $y$ otherwise. `y` and `u` are `(B,)`.

# %%
def drop_labels_mine(y, p, null_label, u):
    """y (B,) long, p in [0, 1], u (B,) uniforms -> (B,): null_label where u < p, else y."""
    # SOLUTION: where the uniform is below p the label becomes the null label (torch.where)
    return torch.where(u < p, torch.full_like(y, null_label), y)
    # END SOLUTION


check_drop_labels(drop_labels_mine);

# %% [markdown]
# The library's `drop_labels` draws the uniforms itself (the image trainer uses its two pieces, `label_drop_mask`
# and `apply_label_drop`). Over many labels the share dropped is $p$:

# %%
mixture = GaussianMixture.symmetric_2D(nmodes=3, std=1.0, scale=2.0)
path = GaussianPath(schedule_from_name("linear"))
model = MLPConditionalField(dim=2, num_classes=3)
P_DROP = 0.2

many = drop_labels(torch.zeros(20_000, dtype=torch.long), P_DROP, model.null_label, generator=torch.Generator().manual_seed(5))
share = float((many == model.null_label).float().mean())
# a share of n Bernoulli(p) draws has standard deviation sqrt(p (1 - p) / n): 5 of them is a generous band
print(f"share of labels dropped: {share:.4f} (p = {P_DROP}, sampling noise +-{(P_DROP * (1 - P_DROP) / 20_000) ** 0.5:.4f})")
assert abs(share - P_DROP) < 5 * (P_DROP * (1 - P_DROP) / 20_000) ** 0.5

# %% [markdown]
# ### Exercise 2: the guidance trainer's loss of one batch
#
# Training is lab 2's flow matching with the (partly dropped) labels passed to the network. On the linear path
# $x_t = t\,x_1 + (1 - t)\,x_0$ (data $x_1$, noise $x_0$), the target is $x_1 - x_0$ and the loss of a batch is
#
# $$\mathcal{L} = \frac{1}{B D} \sum_{i} \big\| u_\theta(x_{t_i}, t_i, \tilde y_i) - (x_{1,i} - x_{0,i}) \big\|^2,
# \qquad \tilde y_i = \varnothing \text{ where } \mathrm{drop}_i, \text{ else } y_i .$$
#
# `drop` is a `(B,)` bool mask, `t` is `(B,)`; call the network as `model(x_t, t, y=labels)`; `model.null_label` is
# $\varnothing$. (Lab 2's `flow_matching_loss(model, path, data, t, noise=noise, model_kwargs={"y": labels})` is
# this loss; writing it out is three lines.)

# %%
def cfg_loss(model, data, labels, drop, t, noise):
    """data, noise (B, D); labels (B,) long; drop (B,) bool; t (B,) -> the loss, a number (a tensor of shape ())."""
    # SOLUTION: null the dropped labels, then the flow-matching loss of the linear path with y passed to the model
    y = torch.where(drop, torch.full_like(labels, model.null_label), labels)
    x_t = t[:, None] * data + (1 - t[:, None]) * noise
    return ((model(x_t, t, y=y) - (data - noise)) ** 2).mean()
    # END SOLUTION


check_cfg_loss(cfg_loss);

# %% [markdown]
# The library trains with the same two steps: `label_drop_mask` draws the mask, `apply_label_drop` nulls the
# labels, `flow_matching_loss` is the rest.

# %%
optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
for _ in range(ITERATIONS):
    data, labels = mixture.sample_with_labels(500)
    labels = apply_label_drop(labels, label_drop_mask(500, P_DROP), model.null_label)
    loss = flow_matching_loss(model, path, data, torch.rand(500), model_kwargs={"y": labels})
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"final loss {loss.item():.3f}")

# %% [markdown]
# Without dropout ($p = 0$) the null label never reaches the network: its embedding row gets no gradient at all, so
# $u_\theta(x, t, \varnothing)$ stays whatever the random initialisation made it. One batch, with and without
# dropout:

# %%
def null_row_gradient(p: float) -> float:
    probe = MLPConditionalField(dim=2, num_classes=3)
    data, labels = mixture.sample_with_labels(500)
    labels = drop_labels(labels, p, probe.null_label, generator=torch.Generator().manual_seed(0))
    flow_matching_loss(probe, path, data, torch.rand(500), model_kwargs={"y": labels}).backward()
    return float(probe.embedding.weight.grad[probe.null_label].norm())


grads = {p: null_row_gradient(p) for p in (0.0, P_DROP)}
print(f"gradient norm of the null label's embedding: p = 0: {grads[0.0]:.2e}; p = {P_DROP}: {grads[P_DROP]:.2e}")
assert grads[0.0] == 0.0 and grads[P_DROP] > 0.0

# %% [markdown]
# **Question.** Why must the trainer drop labels at all, and what share of the training goes to the unconditional
# model here?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Guidance needs two fields from one network: the conditional $u_\theta(x, t, y)$ and the unconditional
# $u_\theta(x, t, \varnothing)$. Only dropout trains the second: at $p = 0$ the null label's embedding received a
# gradient of exactly 0 above, so the "unconditional" field would be an untrained guess, and guidance would
# extrapolate away from noise. With $p = 0.2$ the printed share of dropped labels is 0.2 (up to sampling noise):
# one sample in five trains the unconditional model, the rest the conditional one, in the same weights. Since the
# unconditional target is the average of the conditional ones, the same network learns both at little cost.
#
# </details>

# %% [markdown]
# ### Exercise 3: the guided field
#
# $$\tilde u(x, t \mid y) = (1 - w)\,u_\theta(x, t, \varnothing) + w\,u_\theta(x, t, y)
#   = u_\theta(x, t, \varnothing) + w\,\big(u_\theta(x, t, y) - u_\theta(x, t, \varnothing)\big).$$
#
# Evaluate the network twice (once with the null label for every sample, once with `y`) and mix. `x` is `(B, D)`,
# `t` and `y` are `(B,)`.

# %%
def guided_velocity(model, x, t, y, w, null_label):
    """-> (B, D): (1 - w) model(x, t, y=null) + w model(x, t, y=y)."""
    # SOLUTION: one evaluation with the null label, one with y, mixed with weights 1 - w and w
    unconditional = model(x, t, y=torch.full_like(y, null_label))
    conditional = model(x, t, y=y)
    return (1 - w) * unconditional + w * conditional
    # END SOLUTION


check_guided_velocity(guided_velocity);

# %% [markdown]
# Sample class 0 at $w = 1, 3, 5$ with the core's `ClassifierFreeGuidance` (which does the two evaluations as one
# batch of $2B$: one NFE), from the same starting noise. Two numbers per $w$: the share of samples nearest to their
# own mode's centre (class fidelity), and the samples' spread, the standard deviation per coordinate around their
# mean (diversity). Class 0 is the mixture's first component, $N(\mu_0, 1.0^2 I)$: at $w = 1$ the spread should be
# about 1.0.

# %%
def guided_samples(label: int, w: float, noise: torch.Tensor) -> torch.Tensor:
    y = torch.full((noise.shape[0],), label)
    guided = ClassifierFreeGuidance(model, y, w, null_label=model.null_label)
    field = LearnedVectorFieldODE(lambda x, t: guided(x, t))
    return make_solver("euler", field).simulate(noise, uniform_time_grid(50)).detach()


def share_nearest(x: torch.Tensor, label: int) -> float:
    return float((torch.cdist(x, mixture.means).argmin(1) == label).float().mean())


def spread(x: torch.Tensor) -> float:
    """The per-coordinate standard deviation of a sample, sqrt(trace(Cov) / D)."""
    return float(x.var(0).mean().sqrt())


noise = torch.randn(N, 2, generator=torch.Generator().manual_seed(1))
fig, axes = subplots(3, size=3.3)
shares, spreads = {}, {}
with torch.no_grad():
    for ax, w in zip(axes, (1.0, 3.0, 5.0)):
        x = guided_samples(0, w, noise)
        shares[w], spreads[w] = share_nearest(x, 0), spread(x)
        contour(ax, mixture.log_density, (-6, 6, -6, 6))
        scatter(ax, x, s=2, color="tab:red")
        ax.set(title=f"class 0, w = {w:g}: {shares[w]:.0%} nearest")
show(fig, "guidance_2d")
for w in shares:
    print(f"w = {w:g}: {shares[w]:.1%} nearest to mode 0, spread {spreads[w]:.3f} (the class's own: 1.000)")
assert shares[3.0] > shares[1.0] and shares[5.0] > shares[1.0]
assert spreads[1.0] > spreads[3.0] > spreads[5.0] and abs(spreads[1.0] - 1.0) < 0.2

# %% [markdown]
# **Question.** Read the printed numbers: what does guidance buy, and what does it cost? Why does the spread fall
# below the class's own 1.0?

# %% [markdown]
# <details><summary>Answer</summary>
#
# The share of samples nearest to mode 0 rises with $w$ (the printed shares for $w = 1, 3, 5$), and the spread
# falls from about the class's own 1.0 at $w = 1$ to well below it at $w = 5$: guidance buys class fidelity with
# diversity. For a Gaussian path the velocity is affine in the score, so the guided field is the flow of the
# score $\nabla \log p_t(x) + w\,\nabla \log p_t(y \mid x)$, as if sampling $p(x)\,p(y \mid x)^w$: raising the
# "classifier" $p(y \mid x)$ to the power $w > 1$ pushes mass to where it is most certain of class 0, away from the
# overlap with the other modes, and the tilted density is narrower than $p(x \mid y)$. At $w = 1$ the samples are
# the model's estimate of $p(x \mid y)$ itself, which is why the spread is close to 1.0 there.
#
# </details>

# %% [markdown]
# ## MNIST with the shipped model
#
# ### Exercise 4: a residual layer of the course's U-Net
#
# The course's MNIST U-Net (reproduced as `imgflow.nn.lab_unet.LabUNet`) is built of residual layers that inject
# the time and label embeddings into every level. With `block1`, `block2` (each SiLU, BatchNorm, 3x3 conv) and the
# two adapters (MLPs from the embedding width $d$ to the $C$ channels):
#
# $$h = \mathrm{block1}(x) + \mathrm{time\_adapter}(t_{\mathrm{emb}}) + \mathrm{y\_adapter}(y_{\mathrm{emb}}), \qquad
#   \mathrm{out} = x + \mathrm{block2}(h),$$
#
# the adapters' `(B, C)` outputs broadcast over the image's height and width (index them `[:, :, None, None]`).
# `layer` is an `imgflow.nn.lab_unet.LabResidualLayer`; use its submodules `layer.block1`, `layer.block2`,
# `layer.time_adapter`, `layer.y_adapter`.

# %%
def residual_layer(layer, x, t_embed, y_embed):
    """x (B, C, H, W), t_embed (B, d), y_embed (B, d) -> (B, C, H, W)."""
    # SOLUTION: block1, plus both embeddings adapted to C channels and broadcast, then block2 and the skip
    h = layer.block1(x)
    h = h + layer.time_adapter(t_embed)[:, :, None, None] + layer.y_adapter(y_embed)[:, :, None, None]
    return x + layer.block2(h)
    # END SOLUTION


check_residual_layer(residual_layer);

# %% [markdown]
# `Sampler.from_pretrained("mnist")` loads a small class-conditional U-Net that ships inside the package (EMA
# weights in float16, 1.39 MB): imgflow's own U-Net, whose residual blocks do the same with GroupNorm and one
# embedding of time and label together. `pretrained_path("mnist-classifier")` is the project's classifier, which
# says how many samples look like the digit they were asked for. Diversity here: for each class, the standard
# deviation of each pixel across that class's samples, averaged over pixels and classes (pixels in [-1, 1]); every
# $w$ starts from the same noise.

# %%
sampler = Sampler.from_pretrained("mnist")
classifier, _ = load_classifier(pretrained_path("mnist-classifier"))
num, steps = (20, 8) if SMALL else (100, 20)


def class_pixel_std(images: torch.Tensor, labels: torch.Tensor) -> float:
    """The mean over classes of the per-pixel standard deviation across a class's samples."""
    return float(torch.stack([images[labels == k].std(0).mean() for k in labels.unique()]).mean())


accuracy, diversity = {}, {}
for w in (1.0, 3.0, 5.0):
    samples = sampler.sample(num, guidance=w, steps=steps, seed=0)   # labels 0..9 in turn, one class per column
    accuracy[w] = float((predict(classifier, samples.images) == samples.labels).float().mean())
    diversity[w] = class_pixel_std(samples.images.float(), samples.labels)
    print(f"w = {w:g}: {samples.nfe} NFE, {samples.seconds:.1f} s, class accuracy {accuracy[w]:.0%}, "
          f"per-class pixel std {diversity[w]:.3f}")
    show(samples, f"mnist_w{w:g}")
assert accuracy[3.0] >= 0.8 and accuracy[3.0] >= accuracy[1.0]
assert diversity[1.0] > diversity[3.0] > diversity[5.0]

# %% [markdown]
# **Question.** Compare the grids and the printed numbers for $w = 1, 3, 5$. Why do the digits get bolder and more
# alike, and is $w = 5$ better than $w = 3$?

# %% [markdown]
# <details><summary>Answer</summary>
#
# The class accuracy rises with $w$ (the printed accuracies), while the per-class pixel standard deviation falls:
# the samples of one class look more like each other. It is the 2-D picture again: the guided field follows
# $p(x)\,p(y \mid x)^w$, which concentrates each class on the images the model is most sure of: thick,
# prototypical strokes, fewer slants and unusual shapes. Past the point where nearly every sample is already
# recognised, more guidance buys little accuracy and keeps costing diversity (and, at large $w$, over-saturated,
# blotchy strokes), which is why published models sample at moderate $w$ and choose it by a metric that sees both,
# such as FID.
#
# </details>

# %%
summary()
print_saved();
