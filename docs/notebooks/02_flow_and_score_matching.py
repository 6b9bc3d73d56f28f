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
# # Lab 2: probability paths, flow matching and score matching
#
# Gaussian paths, the conditional and the marginal path, conditional ODE/SDE samples, flow matching and score
# matching with small MLPs, the score derived from the flow, the Langevin-corrected SDE, and a non-Gaussian source
# flowed to a checkerboard, watched as a GIF. You write the pieces (the schedule, the conditional path's sampler,
# vector field and score, the two losses, the score from a velocity), each checked at once against the library by a
# grader that says what differs; the library's versions then train and draw, so the lab runs on whether or not you
# have done an exercise. Open `docs/notebooks/student/02_flow_and_score_matching.ipynb` to do the exercises; this
# notebook has the solutions.
#
# Conventions: $t = 0$ is noise, $t = 1$ data, $x_t = \alpha_t z + \beta_t \epsilon$ with $z$ a data point and
# $\epsilon \sim N(0, I)$. This lab's Gaussian path has the linear schedule $\alpha_t = t$, $\beta_t = 1 - t$ (call it
# *the linear Gaussian path*, `GaussianPath(schedule_from_name("linear"))`); the last section's
# `LinearPath(p_simple=...)` is another object, *the linear interpolant from any source*.
#
# Run time: full size 82 s, CI size 5.9 s (measured 2026-12-07: `python` on a quiet 2-core AMD EPYC,
# AVX2 only; the CI size inside the test suite). Run as a script
# (`python docs/notebooks/02_flow_and_score_matching.py`), it saves every figure under `outputs/notebooks/lab2` and
# lists them.

# %%
# Where imgflow is not installed (Colab, a fresh environment), install it first, from a clone of the repository:
#   pip install -e ".[notebooks]"        (in Colab: !pip install -e "/path/to/the/clone[notebooks]")
import imgflow

imgflow.require_version("0.2")

# %%
import os

import torch

from imgflow.core import (
    ConditionalVectorFieldODE,
    ConditionalVectorFieldSDE,
    GaussianPath,
    LangevinFlowSDE,
    LearnedVectorFieldODE,
    LinearPath,
    convert,
    flow_matching_loss,
    make_solver,
    schedule_from_name,
    uniform_time_grid,
)
from imgflow.display import print_saved, show, start_lab
from toy import (
    Checkerboard,
    Circles,
    GaussianMixture,
    GaussianMixtureMarginals,
    MLPScore,
    MLPVectorField,
    energy_distance,
    irreducible_flow_matching_loss,
    relative_l2,
    train_flow_matching,
    train_score_matching,
)
from toy.animation import animate_particles
from toy.exercises import (
    check_alpha_beta,
    check_conditional_score,
    check_conditional_vector_field,
    check_flow_matching_loss,
    check_sample_conditional_path,
    check_score_from_velocity,
    check_score_matching_loss,
    summary,
)
from toy.irreducible import flow_matching_excess
from toy.plotting import contour, scatter, subplots

SMALL = os.environ.get("IMGFLOW_NOTEBOOK_SIZE", "full") == "ci"
OUT = start_lab("lab2")
ITERATIONS = 150 if SMALL else 3_000
BATCH = 256 if SMALL else 500
N = 1_000 if SMALL else 5_000
torch.manual_seed(0);

target = GaussianMixture.symmetric_2D(nmodes=5, std=0.5, scale=5.0)   # the lab's 5-mode mixture
path = GaussianPath(schedule_from_name("linear"), p_data=target)       # the linear Gaussian path: alpha_t = t, beta_t = 1 - t
exact = GaussianMixtureMarginals(target, path)                          # the exact marginal p_t, u_t and score
BOUNDS = (-8.0, 8.0, -8.0, 8.0)

# %% [markdown]
# ## Conditional and marginal paths
#
# The conditional path $p_t(x \mid z) = N(\alpha_t z, \beta_t^2 I)$ goes from noise ($t = 0$) to one data point $z$
# ($t = 1$); the marginal $p_t = E_{z \sim p_{data}}\, p_t(\cdot \mid z)$ goes from noise to the whole data
# distribution.
#
# ### Exercise 1: the linear schedule
#
# Return $(\alpha_t, \beta_t, \dot\alpha_t, \dot\beta_t)$ of the linear schedule $\alpha_t = t$, $\beta_t = 1 - t$,
# elementwise on a tensor `t` (a constant derivative may be a number).

# %%
def alpha_beta(t):
    """t (any shape) -> (alpha_t, beta_t, d alpha_t / dt, d beta_t / dt), each of t's shape."""
    # SOLUTION: alpha_t = t, beta_t = 1 - t; their derivatives are the constants +1 and -1
    return t, 1 - t, torch.ones_like(t), -torch.ones_like(t)
    # END SOLUTION


check_alpha_beta(alpha_beta);

# %% [markdown]
# ### Exercise 2: a draw of the conditional path
#
# Given the noise $\epsilon$, a draw of $p_t(x \mid z)$ is $x_t = \alpha_t z + \beta_t \epsilon$ ($\beta_t$ is the
# standard deviation, not the variance). `z` and `eps` are `(B, D)`, `t` a column `(B, 1)`.

# %%
def sample_conditional_path(z, t, eps):
    """z, eps (B, D), t (B, 1) -> x_t = t z + (1 - t) eps, shape (B, D)."""
    # SOLUTION: the data weighted by alpha_t = t plus the noise weighted by beta_t = 1 - t
    return t * z + (1 - t) * eps
    # END SOLUTION


check_sample_conditional_path(sample_conditional_path);

# %% [markdown]
# The library's path draws the same (`path.sample_conditional_path` draws the noise itself); the exact marginal
# of the mixture (`toy.GaussianMixtureMarginals`) is drawn beside it:

# %%
z = torch.tensor([[4.0, 2.0]])
fig, axes = subplots(4, nrows=2, size=2.6)
conditional = {}
for k, t in enumerate([0.0, 0.33, 0.66, 1.0]):
    conditional[t] = path.sample_conditional_path(z.expand(N, 2), t)
    scatter(axes[k], conditional[t], s=1)
    scatter(axes[4 + k], exact.sample(t, N), s=1)
    axes[k].set(title=f"conditional, t={t}", xlim=BOUNDS[:2], ylim=BOUNDS[2:])
    axes[4 + k].set(title=f"marginal, t={t}", xlim=BOUNDS[:2], ylim=BOUNDS[2:])
show(fig, "conditional_and_marginal_paths")

# the conditional path at t = 0.66 is N(0.66 z, 0.34^2 I); the marginal's covariance is alpha_t^2 Cov(z) + beta_t^2 I
t = 0.66
cond_mean, cond_std = conditional[t].mean(0), conditional[t].std(0)
marginal = exact.sample(t, 4 * N)
marginal_var, formula_var = marginal.var(0), t**2 * torch.diagonal(target.covariance()) + (1 - t) ** 2
print(f"conditional at t={t}: mean {[round(v, 3) for v in cond_mean.tolist()]} (alpha_t z = {[round(v, 3) for v in (t * z[0]).tolist()]}), "
      f"std {[round(v, 3) for v in cond_std.tolist()]} (beta_t = {1 - t:.2f})")
print(f"marginal at t={t}: variance per coordinate {[round(v, 3) for v in marginal_var.tolist()]}, "
      f"alpha_t^2 Var(z) + beta_t^2 = {[round(v, 3) for v in formula_var.tolist()]}")
# sampling noise, 5 standard errors: a mean's is std / sqrt(N), a Gaussian std's relative one 1 / sqrt(2 N); a sample
# variance's relative one is at most sqrt(2 / n) for this mixture (lighter-tailed than a Gaussian): 0.1 is 4.5 of them at the CI size
assert torch.allclose(cond_mean, t * z[0], atol=5 * (1 - t) / N**0.5) and torch.allclose(cond_std, torch.full((2,), 1 - t), rtol=5 / (2 * N) ** 0.5)
assert torch.allclose(marginal_var, formula_var, rtol=0.1)

# %% [markdown]
# **Question.** Where is the conditional cloud at $t = 0.66$ centred, and how wide is it? And the marginal? Use the
# numbers printed above.

# %% [markdown]
# <details><summary>Answer</summary>
#
# The conditional path is $N(\alpha_t z, \beta_t^2 I) = N(0.66\,z, 0.34^2 I)$: centred at $0.66 \cdot (4, 2) = (2.64,
# 1.32)$ with standard deviation 0.34 in each coordinate, as printed. The marginal is a mixture of such clouds, one
# per data point; $z$ and $\epsilon$ are independent, so its covariance is $\alpha_t^2\,\mathrm{Cov}(z) +
# \beta_t^2 I$: the printed variance per coordinate (about 5.7) is almost all the data's spread shrunk by $0.66^2$,
# plus $0.34^2 = 0.12$ of noise.
#
# </details>

# %% [markdown]
# ## Conditional ODE and SDE: both end at $z$
#
# ### Exercise 3: the conditional vector field
#
# A point of the conditional path moves at $\frac{d}{dt}x_t = \dot\alpha_t z + \dot\beta_t \epsilon$. Written at
# the point $x$ itself ($\epsilon = (x - \alpha_t z)/\beta_t$), this is the conditional vector field
#
# $$u_t(x \mid z) = \Big(\dot\alpha_t - \frac{\dot\beta_t}{\beta_t}\alpha_t\Big) z + \frac{\dot\beta_t}{\beta_t}\, x,$$
#
# whose ODE carries $N(0, I)$ at $t = 0$ along $p_t(\cdot \mid z)$ to $z$ at $t = 1$. Write it for the linear
# schedule (simplify: it is a short expression). `x`, `z` are `(B, D)`, `t` a column `(B, 1)` below 1.

# %%
def conditional_vector_field(x, z, t):
    """x, z (B, D), t (B, 1) < 1 -> u_t(x | z), shape (B, D), on the linear Gaussian path."""
    # SOLUTION: (1 + t / (1 - t)) z - x / (1 - t) simplifies to (z - x) / (1 - t): straight towards z
    return (z - x) / (1 - t)
    # END SOLUTION


check_conditional_vector_field(conditional_vector_field);

# %% [markdown]
# ### Exercise 4: the conditional score
#
# The score of $p_t(x \mid z) = N(\alpha_t z, \beta_t^2 I)$ is
# $\nabla_x \log p_t(x \mid z) = -\frac{x - \alpha_t z}{\beta_t^2}$. Write it for the linear schedule.

# %%
def conditional_score(x, z, t):
    """x, z (B, D), t (B, 1) < 1 -> grad_x log p_t(x | z), shape (B, D), on the linear Gaussian path."""
    # SOLUTION: minus the distance to the mean alpha_t z = t z, over the variance beta_t^2 = (1 - t)^2
    return (t * z - x) / (1 - t) ** 2
    # END SOLUTION


check_conditional_score(conditional_score);

# %% [markdown]
# The library's `path.conditional_vector_field` and `path.conditional_score` drive the conditional ODE and SDE:
# adding $\frac{\sigma^2}{2}\nabla \log p_t(x \mid z)$ to the drift and noise $\sigma\,dW$ keeps the same
# marginals. Both stop at $t = 0.98$ (the fields are singular at 1), where the path is $N(0.98\,z, 0.02^2 I)$.

# %%
x0 = torch.randn(N, 2)
ts = uniform_time_grid(200, 0.0, 0.98)   # the conditional field and score are singular at t = 1
ode_end = make_solver("euler", ConditionalVectorFieldODE(path, z)).simulate(x0, ts)
# the score term grows as 1 / beta_t^2: Euler-Maruyama needs h sigma^2 / (2 beta_t^2) < 1 to stay stable
sde_end = make_solver("euler_maruyama", ConditionalVectorFieldSDE(path, z, sigma=0.3)).simulate(x0, ts)
sde_fine = make_solver("euler_maruyama", ConditionalVectorFieldSDE(path, z, sigma=0.3)).simulate(x0, uniform_time_grid(800, 0.0, 0.98))
on_path = 0.98 * z + 0.02 * x0    # where each start lands on the conditional path, x_t = alpha_t z + beta_t x0
print(f"ODE ends at {[round(v, 4) for v in ode_end.mean(0).tolist()]} (spread {ode_end.std(0).max():.4f}); "
      f"SDE at {[round(v, 4) for v in sde_end.mean(0).tolist()]} (spread {sde_end.std(0).max():.4f}); 0.98 z = {(0.98 * z[0]).tolist()}")
print(f"largest distance of the ODE's end points from 0.98 z + 0.02 x0: {(ode_end - on_path).abs().max():.2e}")
print(f"the SDE's spread at t = 0.98 (exactly 0.02 in the limit): {sde_end.std(0).max():.4f} with 200 steps, "
      f"{sde_fine.std(0).max():.4f} with 800")
assert (ode_end - on_path).abs().max() < 1e-4
assert abs(float(sde_fine.std(0).max()) - 0.02) < abs(float(sde_end.std(0).max()) - 0.02)

# %% [markdown]
# **Question.** The ODE was integrated with 200 Euler steps, yet each end point is exactly where the conditional path
# puts it (the largest distance printed is rounding). Why is Euler exact here, and why is the SDE's spread not
# 0.02?

# %% [markdown]
# <details><summary>Answer</summary>
#
# On the linear Gaussian path $u_t(x \mid z) = (z - x)/(1 - t)$: the distance to $z$ shrinks at the rate
# $1/(1 - t)$. One Euler step multiplies it by $1 - h/(1 - t_k) = (1 - t_{k+1})/(1 - t_k)$, and these factors
# telescope to $1 - t$: each particle moves on a straight line at constant speed, which Euler integrates exactly.
# The SDE's drift has the score term $\frac{\sigma^2}{2}(t z - x)/(1 - t)^2$, stiff as $\beta_t \to 0$; with
# $h \approx 0.005$ and $\beta_t = 0.02$ at the end, Euler–Maruyama is stable but not accurate: the spread printed
# with 200 steps is above 0.02, and with 4 times as many steps it is closer.
#
# </details>

# %% [markdown]
# ## Flow matching
#
# **Why the conditional target learns the marginal field.** The field that moves the marginal $p_t$ is the average
# of the conditional ones over the data points that could have led to $x$: $u_t(x) = E[u_t(x_t \mid z) \mid x_t = x]$.
# A conditional mean is what minimises a mean squared error, so expanding the square (the cross term has mean zero
# given $x_t$) splits the conditional flow-matching loss into
#
# $$L_{CFM}(\theta) = E\,|u_\theta(x_t, t) - u_t(x_t \mid z)|^2 = \underbrace{E\,|u_\theta(x_t, t) - u_t(x_t)|^2}_{L_{FM}(\theta)}
# + \underbrace{E\,|u_t(x_t) - u_t(x_t \mid z)|^2}_{L_{irr}}.$$
#
# $L_{irr}$ does not depend on $\theta$: the loss we can compute (from pairs $z, \epsilon$) and the one we want
# (against the unknown $u_t$) have the same gradients and the same minimiser, $u_\theta = u_t$.
#
# ### Exercise 5: the flow-matching loss of one batch
#
# At $x_t = \alpha_t z + \beta_t \epsilon$ the conditional target is $u_t(x_t \mid z) = \dot\alpha_t z +
# \dot\beta_t \epsilon$, which is $z - \epsilon$ on the linear Gaussian path (finite at every $t$). Return the mean over
# the batch and the coordinates of $(u_\theta(x_t, t) - (z - \epsilon))^2$. The model is called as
# `model(x_t, t)` with `t` of shape `(B,)`; use the column `t[:, None]` in the arithmetic.

# %%
def flow_matching_loss_mine(model, z, t, eps):
    """model(x (B, D), t (B,)) -> (B, D); z, eps (B, D), t (B,) -> the scalar mean of (u_theta(x_t, t) - (z - eps))^2."""
    # SOLUTION: form x_t, evaluate the model there, regress on z - eps
    x_t = t[:, None] * z + (1 - t[:, None]) * eps
    return ((model(x_t, t) - (z - eps)) ** 2).mean()
    # END SOLUTION


check_flow_matching_loss(flow_matching_loss_mine);

# %% [markdown]
# Train with the library's loss (`toy.train_flow_matching`: Adam, cosine learning rate, $t \sim U[0, 1]$), then
# integrate the learned ODE and compare with the exact marginal velocity of the mixture. The two parts of the loss
# are computed with the exact field: `toy.irreducible_flow_matching_loss` ($L_{irr}$, the dashed line) and
# `toy.irreducible.flow_matching_excess` ($L_{FM}$ of the trained model).

# %%
model = MLPVectorField(2, (64, 64, 64, 64))
history = train_flow_matching(model, path, num_iterations=ITERATIONS, batch_size=BATCH, lr=1e-2, seed=0, progress=False)
x1 = make_solver("euler", LearnedVectorFieldODE(model)).simulate(torch.randn(N, 2), uniform_time_grid(100))
check_x = exact.sample(0.5, 4_000)
check_t = torch.full((4_000,), 0.5)
with torch.no_grad():
    field_error = float(relative_l2(model(check_x, check_t), exact.velocity(check_x, check_t)))
floor = irreducible_flow_matching_loss(target, path, 20_000 if SMALL else 400_000)
excess = flow_matching_excess(model, target, path, 10_000 if SMALL else 100_000)
fig, axes = subplots(3, size=3.3)
axes[0].plot(history, lw=0.5)
axes[0].axhline(floor.value, color="k", ls="--", label=f"irreducible {floor.value:.2f}")
axes[0].set(title="flow-matching loss", xlabel="step", yscale="log")
axes[0].legend()
contour(axes[1], target.log_density, BOUNDS, filled=True)
scatter(axes[1], x1, s=1, color="tab:red")
axes[1].set(title="learned ODE samples")
contour(axes[2], lambda x: exact.log_density(x, 0.5), BOUNDS)
axes[2].quiver(*check_x[:300].T, *model(check_x[:300], check_t[:300]).detach().T, color="tab:red", alpha=0.6)
axes[2].set(title="learned field at t = 0.5")
show(fig, "flow_matching")
print(f"relative L2 error of the learned field at t=0.5: {field_error:.3f}; "
      f"energy distance of samples to data: {float(energy_distance(x1, target.sample(N))):.4f}")
# the trained model's loss on a fresh large batch (the library's loss, per sample): its mean and standard error
n = 20_000 if SMALL else 200_000
g = torch.Generator().manual_seed(1)
with torch.no_grad():
    losses = flow_matching_loss(model, path, target.sample(n, generator=g), torch.rand(n, generator=g),
                                noise=torch.randn(n, 2, generator=g), per_sample=True)
final, final_se = float(losses.mean()), float(losses.std()) / n**0.5
print(f"the loss per step over the last 100 steps of training: {sum(history[-100:]) / 100:.3f}")
print(f"the trained model's loss on {n} fresh samples: {final:.3f} +- {final_se:.3f}")
print(f"  = irreducible part L_irr {floor.value:.3f} +- {floor.standard_error:.3f}"
      f"  + the trained model's excess L_FM {excess.value:.3f} +- {excess.standard_error:.3f}"
      f"  (sum {floor.value + excess.value:.3f})")
# three Monte Carlo estimates (L_irr and L_FM share their draws; the fresh batch is independent): 5 combined standard errors
assert abs(final - floor.value - excess.value) < 5 * (final_se**2 + floor.standard_error**2 + excess.standard_error**2) ** 0.5

# %% [markdown]
# **Question.** Why does the loss stop near 4.5 instead of going to 0, and how far is the trained model from the
# best possible one? Use the numbers printed above.

# %% [markdown]
# <details><summary>Answer</summary>
#
# The target $z - \epsilon$ is random even given $x_t$: many pairs $(z, \epsilon)$ pass through the same point and
# ask for different velocities. No model, not even the exact $u_t$, does better than their variance $L_{irr}$: the
# full-size run printed about 4.54 (the CI size about 4.51, with a larger Monte Carlo error). The trained model's loss
# is $L_{irr}$ plus its excess $L_{FM}$, and the printed sum matches the loss measured on fresh samples within the
# printed errors (full size: 4.543 + 0.017 against 4.584 +- 0.017; the training curve's last 100 steps averaged
# about 4.61, the same within the batches' noise). At full size the excess is about 0.02, under half a percent of the
# loss: the curve looks flat long before the field is learned perfectly, and only the excess, measured against the
# exact field, shows what training still gains. At the CI size's 150 steps the excess is far larger (several tenths).
#
# </details>

# %% [markdown]
# ## Score matching, and the score from the flow
#
# Denoising score matching regresses $s_\theta(x_t, t)$ on the conditional score at $x_t$,
# $\nabla \log p_t(x_t \mid z) = -(x_t - \alpha_t z)/\beta_t^2 = -\epsilon / \beta_t$; as for flow matching, the
# conditional mean of that target is the marginal score $\nabla \log p_t(x)$, so the minimiser is the marginal score.
# The library's `score_matching_loss` takes the unweighted mean over the batch and the coordinates of
# $(s_\theta + \epsilon/\beta_t)^2$; the target is infinite at $t = 1$, so `train_score_matching` draws
# $t \sim U[0, 0.98]$.
#
# ### Exercise 6: the denoising score-matching loss of one batch
#
# Return the mean over the batch and the coordinates of $(s_\theta(x_t, t) + \epsilon / \beta_t)^2$ on the linear
# Gaussian path (`t` of shape `(B,)`, below 1).

# %%
def score_matching_loss_mine(model, z, t, eps):
    """model(x (B, D), t (B,)) -> (B, D); z, eps (B, D), t (B,) < 1 -> the scalar mean of (s_theta(x_t, t) + eps / beta_t)^2."""
    # SOLUTION: the conditional score at x_t is -eps / beta_t, with beta_t = 1 - t as a column
    beta = 1 - t[:, None]
    x_t = t[:, None] * z + beta * eps
    return ((model(x_t, t) + eps / beta) ** 2).mean()
    # END SOLUTION


check_score_matching_loss(score_matching_loss_mine);

# %% [markdown]
# ### Exercise 7: the score from a velocity
#
# For a Gaussian path a velocity prediction already gives the score. A point and its conditional velocity are two
# linear combinations of the same $z$ and $\epsilon$:
#
# $$x = \alpha_t z + \beta_t \epsilon, \qquad u = \dot\alpha_t z + \dot\beta_t \epsilon .$$
#
# Eliminating $z$ ($\dot\alpha_t x - \alpha_t u = (\dot\alpha_t \beta_t - \alpha_t \dot\beta_t)\,\epsilon$) gives
# $\epsilon = (\dot\alpha_t x - \alpha_t u)/W_t$ with $W_t = \dot\alpha_t \beta_t - \alpha_t \dot\beta_t$, and the
# conditional score is $-\epsilon/\beta_t$:
#
# $$s = -\frac{\epsilon}{\beta_t} = \frac{\alpha_t u - \dot\alpha_t x}{\beta_t\,(\dot\alpha_t \beta_t - \alpha_t \dot\beta_t)} .$$
#
# The relation is linear in $u$, so it holds for the conditional means too: put in the marginal velocity
# $u_t(x) = E[u \mid x_t = x]$ and out comes the marginal score $E[-\epsilon/\beta_t \mid x_t = x] = \nabla \log p_t(x)$.
# On the linear schedule $W_t = 1$ and $s = (t\,u - x)/(1 - t)$. Write the general formula: the coefficients are
# given as columns `(B, 1)` (the grader tries the linear and the cosine schedule, where $W_t = \pi/2$).

# %%
def score_from_velocity(u, x, alpha, beta, d_alpha, d_beta):
    """u, x (B, D); alpha, beta, d_alpha, d_beta (B, 1) at each sample's t -> the score, shape (B, D)."""
    # SOLUTION: the noise is (d_alpha x - alpha u) / W with W = d_alpha beta - alpha d_beta; the score is -noise / beta
    w = d_alpha * beta - alpha * d_beta
    return (alpha * u - d_alpha * x) / (beta * w)
    # END SOLUTION


check_score_from_velocity(score_from_velocity);

# %% [markdown]
# The library's `imgflow.core.convert(u, "velocity", "score", schedule, x, t)` is this formula (and the other
# conversions between velocity, noise, data and score predictions). Train a score model with the library's loss and
# compare, at a few times, its error and the error of the score converted from the flow model above, both against the
# mixture's exact score:

# %%
score_model = MLPScore(2, (64, 64, 64, 64))
train_score_matching(score_model, path, num_iterations=ITERATIONS, batch_size=BATCH, lr=1e-2, seed=1, progress=False)
errors = {}
with torch.no_grad():
    for t in (0.1, 0.5, 0.9):
        xs, tt = exact.sample(t, 4_000), torch.full((4_000,), t)
        true_score = exact.score(xs, tt)
        from_flow = convert(model(xs, tt), "velocity", "score", path.schedule, xs, tt)
        errors[t] = {"velocity": float(relative_l2(model(xs, tt), exact.velocity(xs, tt))),
                     "score from the flow": float(relative_l2(from_flow, true_score)),
                     "score model": float(relative_l2(score_model(xs, tt), true_score))}
    # the conversion of the exact velocity is the exact score, to rounding
    exact_from_flow = convert(exact.velocity(check_x, check_t), "velocity", "score", path.schedule, check_x, check_t)
    conversion_gap = float(relative_l2(exact_from_flow, exact.score(check_x, check_t)))
print(f"the exact velocity converted is the exact score: relative L2 difference {conversion_gap:.1e} at t=0.5")
print("relative L2 errors against the exact fields (t / (1 - t) is what the conversion multiplies a velocity error by):")
for t, e in errors.items():
    print(f"  t={t} (t / (1 - t) = {t / (1 - t):.2f}): the flow model's velocity {e['velocity']:.3f}, "
          f"the score from it {e['score from the flow']:.3f}, the score model {e['score model']:.3f}")
assert conversion_gap < 1e-4

# %% [markdown]
# **Question.** Compare the two columns printed above: where is the score converted from the flow model worse than
# its velocity, and why? Which model gives the better score here?

# %% [markdown]
# <details><summary>Answer</summary>
#
# The conversion is $s = (t\,u - x)/(1 - t)$: an error $\delta$ in the velocity becomes $t\,\delta/(1 - t)$ in the
# score, the factor printed on each line (the relative errors also carry the ratio of the two fields' sizes). At full
# size the score from the flow was more accurate than the velocity it came from at $t = 0.1$ (0.013 against 0.29)
# and much less at $t = 0.9$ (0.58 against 0.04). The score model's errors were flatter (0.10, 0.22, 0.16): it is
# the better score near $t = 1$, the score from the flow the better one at $t = 0.1$ and $0.5$. The score model is
# trained on the target $-\epsilon/\beta_t$, whose size grows as $1/\beta_t$: its loss and gradients are dominated by
# the times near $0.98$, so the rest is learned less well with the same budget, whereas the flow model's target
# $z - \epsilon$ is bounded at every $t$. (At the CI size both models are far from trained: compare the sizes.)
#
# </details>

# %% [markdown]
# ## The Langevin-corrected SDE
#
# $dX = [u_\theta + \frac{\sigma^2}{2} s_\theta]\,dt + \sigma\,dW$ has the same marginals as the flow ODE for any
# $\sigma$ when both fields are exact: the cell runs it with the mixture's exact velocity and score first, and compares
# its end ($t = 0.98$) with draws of the exact $p_{0.98}$. With learned fields, the score model's error enters the drift
# too. Energy distances are unbiased estimates: between two samples of one law they are 0 on average and as often
# slightly negative as positive; the cell prints the standard deviation of that sampling noise
# (`toy.metrics.null_energy_band`) beside them.

# %%
from toy.metrics import null_energy_band

# the exact-field check: the mixture's exact score costs ~5 ms a call, so few particles and (at the CI size) few steps
M, STEPS = (500, 50) if SMALL else (2_000, 200)
exact_sde = LangevinFlowSDE(exact.velocity, exact.score, sigma=0.5)
x_exact_sde = make_solver("euler_maruyama", exact_sde).simulate(torch.randn(M, 2), uniform_time_grid(STEPS, 0.0, 0.98))
exact_sde_distance = float(energy_distance(x_exact_sde, exact.sample(0.98, M)))
exact_noise = null_energy_band(exact.sample(0.98, 2_000), M)["std"]
print(f"exact fields: energy distance of the SDE's end to p_0.98 {exact_sde_distance:.4f} (sampling noise: 0 +- {exact_noise:.4f})")
assert abs(exact_sde_distance) < 4 * exact_noise

sde = LangevinFlowSDE(model, score_model, sigma=0.5)
x1_sde = make_solver("euler_maruyama", sde).simulate(torch.randn(N, 2), uniform_time_grid(200, 0.0, 0.98))
reference = target.sample(N)
ode_distance, sde_distance = float(energy_distance(x1, reference)), float(energy_distance(x1_sde, reference))
noise = null_energy_band(target.sample(2_000), N)["std"]
print(f"learned fields: energy distance to data: ODE {ode_distance:.4f}, Langevin-corrected SDE {sde_distance:.4f} "
      f"(sampling noise: 0 +- {noise:.4f}; the score model's relative error at t=0.5: {errors[0.5]['score model']:.3f})")

# %% [markdown]
# **Question.** With the learned fields, did the SDE sample the data better or worse than the ODE? Read it against
# the sampling noise printed beside the distances.

# %% [markdown]
# <details><summary>Answer</summary>
#
# Worse, at full size: the ODE's energy distance was 0.0024 and the SDE's 0.0089, against a sampling noise of
# 0.0018 (one std): the ODE's samples are nearly as close to the data as a fresh sample would be, the SDE's are
# measurably off. With the exact fields the same SDE lands on $p_{0.98}$ (the first line printed: a distance within
# the noise; a negative value is that noise, since the estimate is unbiased). So the gap is the learned score: its
# error (0.22 relative at $t = 0.5$) enters the drift with the weight $\sigma^2/2 = 0.125$, and the Langevin noise
# does not correct a wrong score, it samples the density that score describes. A better score (more training, or the
# score converted from the flow where it is accurate) would close the gap; at the CI size both samplers are still far
# from the data and their distances are close.
#
# </details>

# %% [markdown]
# ## A non-Gaussian source: circles to a checkerboard
#
# Flow matching needs only samples of both ends. *The linear interpolant from any source*,
# `LinearPath(p_simple=Circles(...), p_data=Checkerboard(...))`, is $x_t = (1 - t)\,x_0 + t\,z$ with $x_0$ drawn from
# the circles instead of $N(0, I)$: the same conditional target $z - x_0$, so it trains the same way, but it is not a
# Gaussian path (it has no conditional score, and `convert` does not apply). Watch the particles move, with the
# density of where they are and the learned field (`toy.animation.animate_particles` writes a GIF with Pillow, no
# ffmpeg):

# %%
board_path = LinearPath(p_simple=Circles(noise=0.05, factor=0.5, scale=4.0), p_data=Checkerboard(grid_size=4, scale=4.0))
board_model = MLPVectorField(2, (64, 64, 64, 64))
train_flow_matching(board_model, board_path, num_iterations=ITERATIONS * 2, batch_size=BATCH, lr=1e-2, seed=2, progress=False)
ts = uniform_time_grid(40 if SMALL else 80)
start = board_path.p_simple.sample(N)
traj = make_solver("euler", LearnedVectorFieldODE(board_model)).simulate_with_trajectory(start, ts)
keep = slice(None, None, 8 if SMALL else 2)
gif = animate_particles(OUT / "circles_to_checkerboard.gif", traj[:, keep], ts[keep], field=board_model,
                        bounds=(-5, 5, -5, 5), title="circles -> checkerboard")
show(gif, "circles_to_checkerboard")
board = Checkerboard(grid_size=4, scale=4.0)
on_black, on_black_source = float(board.is_black(traj[:, -1]).float().mean()), float(board.is_black(start).float().mean())
print(f"share of particles on the checkerboard's squares at t = 1: {on_black:.2f} (source: {on_black_source:.2f})")
assert on_black > on_black_source

# %% [markdown]
# The exact marginal flow of the mixture, for comparison (its density over time and its field).
# `LearnedVectorFieldODE` takes any callable field $(x, t) \mapsto u$, learned or not: here it wraps the exact
# marginal velocity `exact` (the core has no separate class for a known field).

# %%
ts = uniform_time_grid(5 if SMALL else 40)
traj = make_solver("euler", LearnedVectorFieldODE(exact)).simulate_with_trajectory(torch.randn(N // 2, 2), ts)
gif = animate_particles(OUT / "exact_mixture_flow.gif", traj, ts, density=exact.log_density, field=exact.velocity,
                        bounds=BOUNDS, title="exact flow", grid=40 if SMALL else 80)
show(gif, "exact_mixture_flow")

# %% [markdown]
# ## The numeric checks
#
# `python -m toy` checks the conditional path (6), flow matching (7), score matching (8), SDE sampling (9) and the
# interpolant objective (10, which has the same minimiser as flow matching: half the loss minus a constant) against
# the exact fields. At full size the notebook runs these five at the CI size of `python -m toy --quick`; the
# notebook's own CI size runs none of them (the test suite runs them all).

# %%
from toy.validation import run_validation

results = run_validation(quick=True, checks=[] if SMALL else [6, 7, 8, 9, 10], out_dir=str(OUT / "checks"), verbose=False)
for r in results:
    print(f"{'PASS' if r.passed else 'FAIL'}  {r.name}")
assert all(r.passed for r in results)

# %%
summary()
print_saved();
