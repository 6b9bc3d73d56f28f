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
# # MeanFlow: one-step generation
#
# A flow-matching model needs many small steps because it only knows the *instantaneous* velocity. A MeanFlow
# model $u(x_t, t, r)$ learns the *average* velocity over $[t, r]$, so $x_r = x_t + (r - t)\,u(x_t, t, r)$ jumps in
# one evaluation. It is trained without a teacher through the MeanFlow identity
# $u = v + (r - t)\,\frac{d}{dt}u$, whose total derivative is one forward-mode JVP (see `imgflow.core.mean_flow`).
# First in 2-D against the exact flow map of a mixture, then on MNIST with the one-step model shipped in the package,
# then distilled from a trained flow-matching teacher, in 2-D and from the shipped MNIST teacher.
#
# Full size: a few minutes on a CPU; `IMGFLOW_NOTEBOOK_SIZE=ci` runs it in seconds. Data for the last part: MNIST from
# `IMGFLOW_NOTEBOOK_DATA` (torchvision's layout, default `data`), else digits drawn by the shipped model.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[dev]"        (in Colab: !pip install -e /path/to/the/clone)
import imgflow

imgflow.require_version("0.2")

# %%
import os

import torch
from IPython.display import display

from imgflow import Sampler, config_path, load_config, pretrained_path, train
from imgflow.core import FlowMap, GaussianPath, LearnedVectorFieldODE, make_solver, schedule_from_name, uniform_time_grid
from imgflow.core.mean_flow import mean_flow_loss
from imgflow.data import ImageData, load_image_data
from imgflow.evaluation.classifier import load_classifier, predict
from toy import GaussianMixture, GaussianMixtureMarginals, MLPFlowMap, energy_distance, train_mean_flow, train_mean_flow_distillation
from toy.plotting import contour, plt, scatter, subplots

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
ITERATIONS = 300 if SMALL else 4_000
N = 1_000 if SMALL else 4_000
DATA = os.environ.get("IMGFLOW_NOTEBOOK_DATA", "data")
torch.manual_seed(0)

target = GaussianMixture.symmetric_2D(nmodes=5, std=1.0, scale=4.0)   # check 11's mixture
path = GaussianPath(schedule_from_name("linear"), p_data=target)
exact = GaussianMixtureMarginals(target, path)

# %% [markdown]
# ## The loss, by hand and from the library
#
# What you would write (linear path, no adaptive weight): the conditional velocity $v = z - \epsilon$, the JVP of
# the network along $(v, 1, 0)$ in $(x, t, r)$, and a stop-gradient target:

# %%
def my_mean_flow_loss(model, data, noise, t, r):
    x_t = t[:, None] * data + (1 - t[:, None]) * noise
    v = data - noise
    u, du_dt = torch.func.jvp(lambda x, tt: model(x, tt, r), (x_t, t), (v, torch.ones_like(t)))
    target = (v + (r - t)[:, None] * du_dt).detach()
    return ((u - target) ** 2).mean()


model = MLPFlowMap(2, (64, 64, 64, 64))
data, noise = target.sample(256), torch.randn(256, 2)
t, r = torch.sort(torch.rand(2, 256), dim=0).values
print(f"mine {my_mean_flow_loss(model, data, noise, t, r).item():.6f}   "
      f"library {mean_flow_loss(model, path, data, t, r, noise=noise, adaptive_p=0.0).item():.6f}")

# %% [markdown]
# Train with `toy.train_mean_flow` (uniform sorted pairs, a quarter of them with $r = t$, which is plain flow
# matching), then sample in 1, 2 and 4 jumps with the core's flow-map solver, against the exact ODE's samples:

# %%
model = MLPFlowMap(2, (64, 64, 64, 64), analytic_jvp=True)
train_mean_flow(model, path, time_mean=0.0, time_std=0.0, equal_fraction=0.25, adaptive_p=0.0,
                num_iterations=ITERATIONS, batch_size=500, lr=6e-3, seed=0, progress=False)
x0 = torch.randn(N, 2)
reference = make_solver("rk4", LearnedVectorFieldODE(exact)).simulate(x0, uniform_time_grid(50))
flow_map = FlowMap(lambda x, t, r: model(x, t, r))
fig, axes = subplots(3, size=3.3)
distances = {}
with torch.no_grad():
    for ax, steps in zip(axes, (1, 2, 4)):
        x1 = make_solver("flow_map", flow_map).simulate(x0, uniform_time_grid(steps))
        distances[steps] = float(energy_distance(x1, target.sample(N)))
        map_error = float((x1 - reference).norm(dim=1).mean() / (reference - x0).norm(dim=1).mean())
        contour(ax, target.log_density, (-7, 7, -7, 7))
        scatter(ax, x1, s=1, color="tab:red")
        ax.set(title=f"{steps} NFE: map error {map_error:.2f}")
plt.show()
print("energy distance to the target by NFE:", {k: round(v, 4) for k, v in distances.items()})

# %% [markdown]
# Flow matching's one Euler step, even with the *exact* velocity, lands every sample on the data mean (the
# velocity at $t = 0$ is $E[z] - x_0$): one step needs a flow map.

# %%
one_euler = make_solver("euler", LearnedVectorFieldODE(exact)).simulate(x0, uniform_time_grid(1))
print(f"spread of one exact Euler step: {one_euler.std(0).tolist()} (the data's: {target.sample(N).std(0).tolist()})")

# %% [markdown]
# ## One-step MNIST with the shipped model
#
# `Sampler.from_pretrained("mnist-meanflow")`: the recipe of `configs/mnist_meanflow.toml` (classifier-free guidance
# 1.5 folded into training, so it samples guided at $w = 1$). One NFE per image:

# %%
sampler = Sampler.from_pretrained("mnist-meanflow")
classifier, _ = load_classifier(pretrained_path("mnist-classifier"))
num = 30 if SMALL else 100
for steps in (1, 2):
    samples = sampler.sample(num, steps=steps, seed=0)
    accuracy = float((predict(classifier, samples.images) == samples.labels).float().mean())
    print(f"{samples.settings.describe()}: {samples.seconds:.2f} s for {num} images, class accuracy {accuracy:.0%}")
    display(samples.grid())
assert accuracy >= 0.7

# %% [markdown]
# ## Distilling a teacher
#
# From scratch, the target $v + (r - t)\,\frac{du}{dt}$ uses the conditional velocity $v_c = z - \epsilon$, both as the
# JVP's tangent and in the target. Its mean given $x_t$ is the marginal velocity, so the optimum is right, but at a
# small batch its variance dominates the target. A trained flow-matching model's velocity $v_T(x_t, t)$ can take
# its place (same optimum, far less variance), and its weights are the student's starting point. In 2-D the exact
# mixture velocity is a perfect teacher: the same network and budget as above, distilled, against the exact map:

# %%
student = MLPFlowMap(2, (64, 64, 64, 64), analytic_jvp=True)
train_mean_flow_distillation(student, path, exact, time_mean=0.0, time_std=0.0, equal_fraction=0.25, adaptive_p=0.0,
                             num_iterations=ITERATIONS, batch_size=500, lr=6e-3, seed=0, progress=False)
errors = {}
with torch.no_grad():
    for name, m in (("from scratch", model), ("distilled", student)):
        one = make_solver("flow_map", FlowMap(lambda x, t, r, m=m: m(x, t, r))).simulate(x0, uniform_time_grid(1))
        errors[name] = float((one - reference).norm(dim=1).mean() / (reference - x0).norm(dim=1).mean())
print("one-step map error:", {k: round(v, 4) for k, v in errors.items()})
assert errors["distilled"] < errors["from scratch"]

# %% [markdown]
# On MNIST the teacher is the shipped flow-matching model `mnist`. `configs/mnist_distill.toml` names it
# (`[flow.mean_flow_distillation] teacher = "mnist"`), starts the student from its weights (the second time's
# embedding new and zero, so at step 0 the student's jump is the teacher's velocity) and folds guidance 1 into the
# target. The full size trains for 3 CPU-minutes (the docs' budget table goes to 15); the CI size a few steps.

# %%
try:
    if SMALL:
        raise FileNotFoundError("CI size: no dataset files")
    digits = load_image_data("mnist", DATA, train=True, download=False)
except (FileNotFoundError, OSError, ValueError) as reason:
    print(f"no MNIST here ({str(reason)[:80]}...): using digits drawn by the shipped model")
    shipped = Sampler.from_pretrained("mnist")
    teacher_samples = shipped.sample(64 if SMALL else 5_000, steps=6 if SMALL else 20, batch_size=500)
    digits = ImageData(teacher_samples.to_uint8(), teacher_samples.labels, spec=shipped.record.spec)  # MNIST's class names
overrides = {"run.output_dir": os.path.join(os.environ.get("IMGFLOW_NOTEBOOK_OUT", "outputs/notebooks"), "distill"),
             "train.sample_every": 0, "train.steps": 4 if SMALL else 100_000, "train.max_minutes": 0.0 if SMALL else 3.0,
             "train.batch_size": 16 if SMALL else 64}
result = train(load_config(config_path("mnist_distill"), overrides), data=digits, progress=False)
distilled = Sampler.from_checkpoint(result.run_dir)
for steps in (1, 2):
    samples = distilled.sample(num, steps=steps, seed=0)
    accuracy = float((predict(classifier, samples.images) == samples.labels).float().mean())
    print(f"distilled, {samples.settings.describe()} after {result.step} steps: class accuracy {accuracy:.0%}")
    display(samples.grid())

# %% [markdown]
# ## The numeric checks
#
# `python -m toy --checks 11,12` trains these flow maps for longer: check 11 compares the one-step map of MeanFlow
# from scratch with the exact flow map, check 12 requires the map distilled from the exact velocity to land at most
# half as far from it, at 1 and at 2 steps (the test suite runs both; the CI size here leaves them out):

# %%
from toy.validation import run_validation

out_dir = os.path.join(os.environ.get("IMGFLOW_NOTEBOOK_OUT", "outputs/notebooks"), "meanflow_checks")
results = run_validation(quick=True, checks=[] if SMALL else [11, 12], out_dir=out_dir, verbose=False)
for res in results:
    print(f"{'PASS' if res.passed else 'FAIL'}  {res.name}")
assert all(res.passed for res in results)
