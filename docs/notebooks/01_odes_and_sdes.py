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
# # Lab 1: ODEs, SDEs, Brownian motion, Ornstein–Uhlenbeck and Langevin dynamics
#
# The course's first lab writes an ODE/SDE simulator from scratch. Here you write the pieces (an Euler step, an
# Euler–Maruyama step, the drift and diffusion of three processes), each checked at once against the library by a
# grader that says what differs; the library's versions then draw the pictures, so the lab runs on whether or not
# you have done an exercise. Open `docs/notebooks/student/01_odes_and_sdes.ipynb` to do the exercises; this
# notebook has the solutions.
#
# Run time: full size 40 s, CI size 2.6 s (measured 2026-12-07: `python` on a quiet 2-core AMD EPYC,
# AVX2 only; the CI size inside the test suite). Run as a script
# (`python docs/notebooks/01_odes_and_sdes.py`), it saves every figure under `outputs/notebooks/lab1` and lists them.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[notebooks]"        (in Colab: !pip install -e "/path/to/the/clone[notebooks]")
import imgflow

imgflow.require_version("0.2")

# %%
import os

import torch

from imgflow.core import make_solver, uniform_time_grid
from imgflow.display import print_saved, show, start_lab
from toy import BrownianMotion, Gaussian, GaussianMixture, LangevinDynamics, OrnsteinUhlenbeck, energy_distance
from toy.exercises import (
    check_brownian_motion,
    check_euler_maruyama_step,
    check_euler_step,
    check_langevin,
    check_ornstein_uhlenbeck,
    summary,
)
from toy.plotting import contour, plt, subplots, trajectories

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
N = 2_000 if SMALL else 20_000      # particles
STEPS = 100 if SMALL else 500       # solver steps
OUT = start_lab("lab1")
torch.manual_seed(0);

# %% [markdown]
# ## Exercise 1: one Euler step of an ODE
#
# An ODE $\frac{dx}{dt} = u(x, t)$ is simulated by small steps $x_{t+h} = x_t + h\,u(x_t, t)$. Write one step:
# `x` is a batch `(B, D)`, `t` a column `(B, 1)`, `h` a number.

# %%
def euler_step(u, x, t, h):
    """x (B, D), t (B, 1), h > 0 -> x + h u(x, t), shape (B, D)."""
    # SOLUTION: move x by h times the velocity u(x, t)
    return x + h * u(x, t)
    # END SOLUTION


check_euler_step(euler_step);

# %% [markdown]
# ## Exercise 2: one Euler–Maruyama step of an SDE
#
# An SDE $dX_t = f(X_t, t)\,dt + g(X_t, t)\,dW_t$ is simulated by
# $X_{t+h} = X_t + f\,h + g\sqrt{h}\,\xi$ with $\xi \sim N(0, I)$: over a step of length $h$, Brownian motion moves by
# $W_{t+h} - W_t \sim N(0, h I)$, whose size is $\sqrt{h}$, not $h$. The noise `xi` is given, so the step is a fixed
# function you can check.

# %%
def euler_maruyama_step(f, g, x, t, h, xi):
    """x (B, D), t (B, 1), h > 0, xi (B, D) standard normal -> x + f(x, t) h + g(x, t) sqrt(h) xi."""
    # SOLUTION: the drift moves x by f h, the noise by g sqrt(h) xi
    return x + f(x, t) * h + g(x, t) * h**0.5 * xi
    # END SOLUTION


check_euler_maruyama_step(euler_maruyama_step);

# %% [markdown]
# The library's processes are core `SDE`s (`toy.BrownianMotion`, `toy.OrnsteinUhlenbeck`, `toy.LangevinDynamics`),
# and `make_solver("euler_maruyama", sde)` integrates any of them with this step.
#
# **Question.** Why must the noise scale as $\sqrt{h}$? What would a step with $g\,h\,\xi$ simulate as $h \to 0$?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Over $[0, T]$ there are $T/h$ steps of independent noise; their variances add, so the total variance is
# $(T/h)\,g^2 h = g^2 T$, independent of $h$: the simulation converges to the SDE. With $g\,h\,\xi$ the total
# variance is $(T/h)\,g^2 h^2 = g^2 T h \to 0$: the noise vanishes and the step simulates the ODE $dx = f\,dt$.
# The Brownian-motion cell below measures the variance at $t = 2$ as $\approx 2\sigma^2$, whatever the step.
#
# </details>

# %% [markdown]
# ## Exercise 3: Brownian motion
#
# $dX = \sigma\,dW$: no drift, a constant diffusion. Return `(drift, diffusion)` at `x (B, D)`, `t (B, 1)`; the
# diffusion may be a number, a column `(B, 1)` or `(B, D)`.

# %%
def brownian_motion(x, t, sigma):
    """-> (drift (B, D), diffusion) of dX = sigma dW."""
    # SOLUTION: no drift; the diffusion is sigma everywhere
    return torch.zeros_like(x), sigma
    # END SOLUTION


check_brownian_motion(brownian_motion);

# %% [markdown]
# Simulated with the library, the variance grows as $\sigma^2 t$:

# %%
bm = BrownianMotion(sigma=1.0)
ts = uniform_time_grid(STEPS, 0.0, 2.0)
paths = make_solver("euler_maruyama", bm).simulate_with_trajectory(torch.zeros(N, 1), ts)  # (N, T, 1)
fig, (ax1, ax2) = subplots(2, size=4)
for k in range(20):
    ax1.plot(ts, paths[k, :, 0], lw=0.6)
ax1.set(title="20 Brownian paths", xlabel="t")
ax2.plot(ts, paths[..., 0].var(0), label="empirical Var[X_t]")
ax2.plot(ts, bm.sigma**2 * ts, "k--", label=r"$\sigma^2 t$")
ax2.set(title="variance", xlabel="t")
ax2.legend()
show(fig, "brownian_motion")
final_var = float(paths[:, -1, 0].var())
# the sample variance of N normals has relative standard deviation sqrt(2 / (N - 1)): 5 of them is a generous band
print(f"Var[X_2] = {final_var:.3f}, expected sigma^2 t = 2 (sampling noise +-{2 * (2 / (N - 1)) ** 0.5:.3f})")
assert abs(final_var - 2.0) < 5 * 2 * (2 / (N - 1)) ** 0.5

# %% [markdown]
# ## Exercise 4: Ornstein–Uhlenbeck
#
# $dX = -\theta X\,dt + \sigma\,dW$ pulls particles to 0 while the noise spreads them.

# %%
def ornstein_uhlenbeck(x, t, theta, sigma):
    """-> (drift (B, D), diffusion) of dX = -theta X dt + sigma dW."""
    # SOLUTION: a drift back to 0, proportional to x; constant noise
    return -theta * x, sigma
    # END SOLUTION


check_ornstein_uhlenbeck(ornstein_uhlenbeck);

# %% [markdown]
# The variance settles at $D = \sigma^2 / 2\theta$. Trajectories for a few $(\sigma, \theta)$:

# %%
settings = [(0.25, 0.25), (1.0, 0.25), (0.25, 2.0), (1.0, 2.0)]
ts = uniform_time_grid(STEPS, 0.0, 8.0)
fig, axes = subplots(4, size=3)
for ax, (sigma, theta) in zip(axes, settings):
    proc = OrnsteinUhlenbeck(theta=theta, sigma=sigma)
    traj = make_solver("euler_maruyama", proc).simulate_with_trajectory(torch.linspace(-4, 4, N)[:, None], ts)
    for k in range(0, N, N // 15):
        ax.plot(ts, traj[k, :, 0], lw=0.6)
    ax.set(title=f"sigma={sigma}, theta={theta}", xlabel="t", ylim=(-4.5, 4.5))
show(fig, "ornstein_uhlenbeck_trajectories")

# %% [markdown]
# **The collapse.** Started at a point $x_0$, the variance is $D\,(1 - e^{-2\theta t})$: plotted as Var / D
# against $\theta t$, every $(\sigma, \theta)$ falls on one curve.

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
at_one = {}
h = float(ts[1] - ts[0])
for sigma, theta in settings:
    proc = OrnsteinUhlenbeck(theta=theta, sigma=sigma)
    traj = make_solver("euler_maruyama", proc).simulate_with_trajectory(torch.zeros(N, 1), ts)
    ratio = traj[..., 0].var(0) / proc.stationary_variance
    ax.plot(theta * ts, ratio, label=f"sigma={sigma}, theta={theta}")
    k = int((ts * theta <= 1.0).sum()) - 1    # the last grid time with theta t <= 1
    # the Euler-Maruyama chain's own variance: V_{k+1} = (1 - theta h)^2 V_k + sigma^2 h, from V_0 = 0
    chain = sigma**2 * h * (1 - (1 - theta * h) ** (2 * k)) / (1 - (1 - theta * h) ** 2) / proc.stationary_variance
    at_one[(sigma, theta)] = (float(ratio[k]), chain, float(1 - torch.exp(-2 * theta * ts[k])))
grid = torch.linspace(0, 16, 200)
ax.plot(grid, 1 - torch.exp(-2 * grid), "k--", label=r"$1 - e^{-2\theta t}$")
ax.set(xlabel=r"$\theta t$", ylabel="Var[X_t] / D", xlim=(0, 6))
ax.legend(fontsize=8)
show(fig, "ornstein_uhlenbeck_collapse")
print(f"Var/D near theta t = 1 (step h = {h:.3f}):")
for (sigma, theta), (measured, chain, formula) in at_one.items():
    print(f"  sigma={sigma}, theta={theta}: measured {measured:.3f}, the Euler-Maruyama chain {chain:.3f}, "
          f"the SDE {formula:.3f}")
    # a sample variance of N normals has relative standard deviation sqrt(2 / (N - 1)): 5 of them
    assert abs(measured / chain - 1) < 5 * (2 / (N - 1)) ** 0.5

# %% [markdown]
# The SDE's curve and the simulated chain's differ by the step: Euler–Maruyama's OU has variance
# $\sigma^2 h / (1 - (1 - \theta h)^2) = D / (1 - \theta h / 2)$ at equilibrium, a relative excess of about $\theta h / 2$
# (up to 1.6 % at the full size's $h$, 8 % at the CI size's).

# %% [markdown]
# **Question.** Which of the four settings forgets its starting point fastest, and which ends the widest? Read it
# off the trajectories and the numbers printed above.

# %% [markdown]
# <details><summary>Answer</summary>
#
# The memory of the start decays as $e^{-\theta t}$ (the mean) and $e^{-2\theta t}$ (the variance's approach to
# $D$): the two settings with $\theta = 2$ forget eight times faster than those with $\theta = 0.25$, whatever
# $\sigma$. The width at the end is $\sqrt{D} = \sigma / \sqrt{2\theta}$: largest for $\sigma = 1, \theta = 0.25$
# ($D = 2$), smallest for $\sigma = 0.25, \theta = 2$ ($D = 1/64$). Against $\theta t$ all four variance curves
# are the same curve: every setting printed $\mathrm{Var}/D$ near $1 - e^{-2} = 0.865$ at $\theta t = 1$ (up to the
# step's bias above).
#
# </details>

# %% [markdown]
# ## Exercise 5: Langevin dynamics
#
# $dX = \frac{\sigma^2}{2} \nabla \log p(X)\,dt + \sigma\,dW$ has $p$ as its stationary law. `score(x)` is
# $\nabla \log p(x)$, shape `(B, D)`.

# %%
def langevin(x, t, score, sigma):
    """-> (drift (B, D), diffusion) of dX = sigma^2 / 2 score(X) dt + sigma dW."""
    # SOLUTION: the drift is sigma^2 / 2 times the score; constant noise sigma
    return 0.5 * sigma**2 * score(x), sigma
    # END SOLUTION


check_langevin(langevin);

# %% [markdown]
# **Derivation: Ornstein–Uhlenbeck is Langevin dynamics.** Take $p = N(0, D\,I)$, whose score is
# $\nabla \log p(x) = -x / D$. The Langevin drift is $\frac{\sigma^2}{2} \cdot (-x / D)$, which is $-\theta x$ exactly
# when $D = \sigma^2 / 2\theta$: the OU process is Langevin dynamics for its own stationary law. The library's two
# processes agree:

# %%
theta, sigma = 0.7, 0.9
D = sigma**2 / (2 * theta)
x = torch.randn(5, 2)
ou_drift = OrnsteinUhlenbeck(theta=theta, sigma=sigma).drift_coefficient(x, torch.zeros(5, 1))
langevin_drift = LangevinDynamics(Gaussian(torch.zeros(2), D * torch.eye(2)), sigma=sigma).drift_coefficient(x, torch.zeros(5, 1))
print(f"largest difference of the drifts: {(ou_drift - langevin_drift).abs().max():.2e}")
assert torch.allclose(ou_drift, langevin_drift, atol=1e-5)

# %% [markdown]
# ## Langevin dynamics sample a mixture
#
# Started anywhere, the particles end up distributed as $p$. The energy distance to real draws of $p$ falls towards 0.
# The estimate is *unbiased* (it leaves out the pairs of a point with itself), so for two samples of the same law it
# is zero on average and a single value is as often slightly below zero as above: a negative value means "as close
# as sampling noise can tell", not an error. The plot is linear above zero, logarithmic beyond (symlog), with the
# zero line and the band $\pm 2$ standard deviations of the estimate between two independent samples of $p$ itself
# (`toy.metrics.null_energy_band`, from the estimate's exact variance).

# %%
from toy.metrics import null_energy_band

target = GaussianMixture.symmetric_2D(nmodes=5, std=0.7, scale=6.0)
langevin_sde = LangevinDynamics(target, sigma=0.6)
ts = uniform_time_grid(STEPS * 2, 0.0, 40.0 if SMALL else 60.0)
start = torch.randn(N // 2, 2) * 8
traj = make_solver("euler_maruyama", langevin_sde).simulate_with_trajectory(start, ts)
reference = target.sample(N // 2)
checkpoints = list(range(0, ts.numel(), ts.numel() // 10))
distances = [float(energy_distance(traj[:, k], reference)) for k in checkpoints]
noise = null_energy_band(target.sample(2_000), N // 2)   # the estimate's exact spread at this size
band = 2 * noise["std"]
fig, (ax1, ax2) = subplots(2, size=4)
contour(ax1, target.log_density, (-10, 10, -10, 10), filled=True)
trajectories(ax1, traj, num=15)
ax1.set(title="Langevin trajectories")
ax2.axhspan(-band, band, color="0.85", label="sampling noise (2 std)")
ax2.axhline(0.0, color="k", lw=0.8)
ax2.plot(ts[checkpoints], distances, "o-", label="energy distance to p")
ax2.set(title="energy distance to p", xlabel="t")
ax2.set_yscale("symlog", linthresh=max(band, 1e-3))
ax2.legend(fontsize=8)
show(fig, "langevin_mixture")
print(f"energy distance at t=0: {distances[0]:.3f}, at the end: {distances[-1]:.4f}; "
      f"between two samples of p it is 0 +- {noise['std']:.4f} (one std)")
print("distances at the last 5 checkpoints:", [round(d, 4) for d in distances[-5:]])
assert distances[-1] < 0.1 * distances[0]

# %% [markdown]
# **Question.** Read the noise level off the plot: from which time on are the distances indistinguishable from
# sampling noise, and what does a negative value printed above say?

# %% [markdown]
# <details><summary>Answer</summary>
#
# Once the points sit inside the grey band (the last checkpoints printed above, at the full size), the chain's
# particles are as close to $p$ as a fresh sample of $p$ would be: the remaining differences are noise of
# $\pm 2\,$std of the estimate. A negative value is one of those: the unbiased estimate's mean is 0 for equal laws, so
# it falls below 0 about half the time. Plotted on a log axis it would vanish, which is why the axis is symlog.
#
# </details>

# %% [markdown]
# ## The numeric checks behind these pictures
#
# `python -m toy` checks each claim against its closed form with a tolerance derived from the sample size;
# checks 2-5 are this lab's (Brownian variance, OU mean and variance, Gaussian Euler–Maruyama increments,
# Langevin's stationary law), here at the CI size of `python -m toy --quick` (the notebook's own CI size runs only
# check 2; the test suite runs them all):

# %%
from toy.validation import run_validation

results = run_validation(quick=True, checks=[2] if SMALL else [2, 3, 4, 5], out_dir=str(OUT / "checks"), verbose=False)
for r in results:
    print(f"{'PASS' if r.passed else 'FAIL'}  {r.name}")
assert all(r.passed for r in results)

# %%
summary()
print_saved();
