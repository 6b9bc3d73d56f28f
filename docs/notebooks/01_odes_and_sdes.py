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
# The course's first lab writes an ODE/SDE simulator from scratch. Here every piece is in the library, and the
# notebook shows, for each, the few lines a student would write next to the library's version doing the same.
#
# Runs on a CPU in about a minute (`IMGFLOW_NOTEBOOK_SIZE=ci` makes it a few seconds, for the test suite).
# Open its `.ipynb` twin in Jupyter, VS Code or Colab, or run this percent script with `python`.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[dev]"        (in Colab: !pip install -e /path/to/the/clone)
import imgflow

imgflow.require_version("0.2")

# %%
import os

import torch

from imgflow.core import make_solver, uniform_time_grid
from toy import BrownianMotion, GaussianMixture, LangevinDynamics, OrnsteinUhlenbeck, energy_distance
from toy.plotting import contour, plt, subplots, trajectories

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
N = 2_000 if SMALL else 20_000      # particles
STEPS = 100 if SMALL else 500       # solver steps
torch.manual_seed(0)

# %% [markdown]
# ## Euler–Maruyama, by hand and from the library
#
# An SDE $dX_t = f(X_t, t)\,dt + g(X_t, t)\,dW_t$ is simulated by
# $X_{t+h} = X_t + f\,h + g\sqrt{h}\,\xi$ with $\xi \sim N(0, I)$. What you would write:

# %%
def my_euler_maruyama(drift, diffusion, x, ts, generator):
    """x (B, D) from ts[0] to ts[-1]; drift(x, t) -> (B, D), diffusion(x, t) -> (B, 1) or (B, D)."""
    for t, t_next in zip(ts[:-1], ts[1:]):
        h = t_next - t
        xi = torch.randn(x.shape, generator=generator)
        x = x + drift(x, t) * h + diffusion(x, t) * h.sqrt() * xi
    return x


# %% [markdown]
# The library's processes are core `SDE`s (`toy.BrownianMotion`, `toy.OrnsteinUhlenbeck`, `toy.LangevinDynamics`),
# and `make_solver("euler_maruyama", sde)` integrates any of them. With the same random numbers, both give the
# same particles:

# %%
ou = OrnsteinUhlenbeck(theta=1.0, sigma=0.8)
x0 = torch.full((N, 2), 3.0)
ts = uniform_time_grid(STEPS, 0.0, 5.0)
mine = my_euler_maruyama(lambda x, t: -ou.theta * x, lambda x, t: ou.sigma, x0, ts, torch.Generator().manual_seed(1))
library = make_solver("euler_maruyama", ou, generator=torch.Generator().manual_seed(1)).simulate(x0, ts)
print(f"largest difference, mine vs library: {(mine - library).abs().max():.2e}")

# %% [markdown]
# ## Brownian motion: the variance grows as $\sigma^2 t$

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
plt.show()

# %% [markdown]
# ## Ornstein–Uhlenbeck over $\sigma$ and $\theta$
#
# $dX = -\theta X\,dt + \sigma\,dW$ pulls particles to 0 and the noise spreads them: the variance settles at
# $D = \sigma^2 / 2\theta$. Trajectories for a few $(\sigma, \theta)$:

# %%
settings = [(0.25, 0.25), (1.0, 0.25), (0.25, 2.0), (1.0, 2.0)]
ts = uniform_time_grid(STEPS, 0.0, 8.0)
fig, axes = subplots(4, size=3)
finals = {}
for ax, (sigma, theta) in zip(axes, settings):
    proc = OrnsteinUhlenbeck(theta=theta, sigma=sigma)
    traj = make_solver("euler_maruyama", proc).simulate_with_trajectory(torch.linspace(-4, 4, N)[:, None], ts)
    finals[(sigma, theta)] = traj
    for k in range(0, N, N // 15):
        ax.plot(ts, traj[k, :, 0], lw=0.6)
    ax.set(title=f"sigma={sigma}, theta={theta}", xlabel="t", ylim=(-4.5, 4.5))
plt.show()

# %% [markdown]
# **The collapse.** Started at a point $x_0$, the variance is $D\,(1 - e^{-2\theta t})$: plotted as Var / D
# against $\theta t$, every $(\sigma, \theta)$ falls on one curve.

# %%
fig, ax = plt.subplots(figsize=(5, 3.5))
for sigma, theta in settings:
    proc = OrnsteinUhlenbeck(theta=theta, sigma=sigma)
    traj = make_solver("euler_maruyama", proc).simulate_with_trajectory(torch.zeros(N, 1), ts)
    ax.plot(theta * ts, traj[..., 0].var(0) / proc.stationary_variance, label=f"sigma={sigma}, theta={theta}")
grid = torch.linspace(0, 16, 200)
ax.plot(grid, 1 - torch.exp(-2 * grid), "k--", label=r"$1 - e^{-2\theta t}$")
ax.set(xlabel=r"$\theta t$", ylabel="Var[X_t] / D", xlim=(0, 6))
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## Langevin dynamics sample a mixture
#
# $dX = \frac{\sigma^2}{2} \nabla \log p(X)\,dt + \sigma\,dW$ has $p$ as its stationary law: started anywhere,
# the particles end up distributed as $p$. The energy distance to real draws of $p$ falls towards 0
# (its noise level at this sample size is the spread of the last values).

# %%
target = GaussianMixture.symmetric_2D(nmodes=5, std=0.7, scale=6.0)
langevin = LangevinDynamics(target, sigma=0.6)
ts = uniform_time_grid(STEPS * 2, 0.0, 40.0 if SMALL else 60.0)
start = torch.randn(N // 2, 2) * 8
traj = make_solver("euler_maruyama", langevin).simulate_with_trajectory(start, ts)
reference = target.sample(N // 2)
checkpoints = list(range(0, ts.numel(), ts.numel() // 10))
distances = [float(energy_distance(traj[:, k], reference)) for k in checkpoints]
fig, (ax1, ax2) = subplots(2, size=4)
contour(ax1, target.log_density, (-10, 10, -10, 10), filled=True)
trajectories(ax1, traj, num=15)
ax1.set(title="Langevin trajectories")
ax2.plot(ts[checkpoints], distances, "o-")
ax2.set(title="energy distance to p", xlabel="t", yscale="log")
plt.show()
print(f"energy distance at t=0: {distances[0]:.3f}, at the end: {distances[-1]:.4f}")
assert distances[-1] < 0.1 * distances[0]

# %% [markdown]
# ## The numeric checks behind these pictures
#
# `python -m toy` checks each claim against its closed form with a tolerance derived from the sample size;
# checks 2-5 are this lab's (Brownian variance, OU mean and variance, Gaussian Euler–Maruyama increments,
# Langevin's stationary law), at the CI size of `python -m toy --quick` (the notebook's own CI size runs only the
# first: the test suite runs them all):

# %%
from toy.validation import run_validation

out_dir = os.path.join(os.environ.get("IMGFLOW_NOTEBOOK_OUT", "outputs/notebooks"), "lab1_checks")
results = run_validation(quick=True, checks=[2] if SMALL else [2, 3, 4, 5], out_dir=out_dir, verbose=False)
for r in results:
    print(f"{'PASS' if r.passed else 'FAIL'}  {r.name}")
assert all(r.passed for r in results)
