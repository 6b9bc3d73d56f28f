"""Check 6: the conditional ODE and SDE of the core reproduce the conditional Gaussian path."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from imgflow.core import (
    ODE,
    SDE,
    ConditionalVectorFieldODE,
    ConditionalVectorFieldSDE,
    CosineSchedule,
    EulerMaruyamaSolver,
    EulerSolver,
    GaussianPath,
    uniform_time_grid,
)
from toy.checks.base import CheckResult, Context, Z, simulate_snapshots
from toy.plotting import subplots


def euler_chain_moments(dynamics: ODE | SDE, dim: int, ts: Tensor) -> tuple[Tensor, Tensor]:
    """Exact per-coordinate mean and variance of the Euler(-Maruyama) chain from N(0, I).

    Valid when the drift is affine in x with a scalar slope, f(x, t) = a(t) x + b(t), and the
    diffusion g(t) does not depend on x (true of the conditional fields of a Gaussian path).
    a and b are read off the dynamics themselves (f(0) and f(1) - f(0)); then
    m' = m + h (a m + b) and v' = (1 + h a)^2 v + g^2 h exactly. Returns (T, dim) tensors in
    float64. Used to estimate the step error by Richardson extrapolation.
    """
    ts = ts.double()
    m = torch.zeros(1, dim, dtype=torch.float64)
    v = torch.ones(1, dim, dtype=torch.float64)
    ms, vs = [m], [v]
    zero, one = torch.zeros(1, dim, dtype=torch.float64), torch.ones(1, dim, dtype=torch.float64)
    for i in range(ts.numel() - 1):
        t, h = ts[i].reshape(1), ts[i + 1] - ts[i]
        b = dynamics.drift_coefficient(zero, t)
        a = dynamics.drift_coefficient(one, t) - b
        g2 = dynamics.diffusion_coefficient(zero, t).pow(2) if isinstance(dynamics, SDE) else 0.0
        m = m + h * (a * m + b)
        v = (1 + h * a) ** 2 * v + g2 * h
        ms.append(m)
        vs.append(v)
    return torch.cat(ms), torch.cat(vs)


def check_conditional_path(ctx: Context) -> CheckResult:
    """From x0 ~ N(0, I), the conditional ODE and SDE have X_t ~ N(alpha_t z, beta_t^2 I).

    Setup: GaussianPath(CosineSchedule()), z = (2, -1), sigma = 0.5 for the SDE, Euler (ODE)
    and Euler-Maruyama (SDE) with h = 2e-3 on [0, 0.95] (the fields are infinite at t = 1);
    sample mean and variance of n samples at t = 0.2, 0.4, 0.6, 0.8, 0.95.

    Tolerance at each t = sampling + step error:
    - sampling: Z = 5 standard errors: sqrt(v / n) per mean coordinate, v sqrt(2 / (N - 1))
      for the variance pooled over both coordinates (N = 2n);
    - step error: both chains are affine in x0 with additive noise, so the exact law of the
      Euler(-Maruyama) chain follows from `euler_chain_moments`; its discretisation error is
      estimated by Richardson extrapolation, err(h) ~ 2 |M_h - M_{h/2}| for a first-order
      method, and we allow 3 |M_h - M_{h/2}| (50% for the O(h^2) remainder). A wrong drift
      would converge to the wrong moments: M_h - M_{h/2} stays small and the check fails.
    Each row reports the t with the largest error / tolerance ratio.
    """
    res = CheckResult("06_conditional_path", "conditional ODE/SDE reproduce N(alpha_t z, beta_t^2 I)")
    ctx.reseed(res.name)
    path = GaussianPath(CosineSchedule())
    z = torch.tensor([2.0, -1.0])
    n = ctx.sizes.n_conditional
    nn = 2 * n
    sigma, t_end, steps = 0.5, 0.95, 475
    ts = uniform_time_grid(steps, 0.0, t_end)
    check_t = [0.2, 0.4, 0.6, 0.8, 0.95]
    keep = [round(t / t_end * steps) for t in check_t]
    zb = z.expand(n, 2)
    z1 = z.expand(1, 2).double()
    sched = path.schedule
    closed_mean = {t: sched.alpha(torch.tensor(t, dtype=torch.float64)).item() * z.double() for t in check_t}
    closed_var = {t: sched.beta(torch.tensor(t, dtype=torch.float64)).item() ** 2 for t in check_t}
    gen = torch.Generator().manual_seed(ctx.seed_for(res.name + "/sde"))
    runs = {
        "ODE": (EulerSolver(ConditionalVectorFieldODE(path, zb)), ConditionalVectorFieldODE(path, z1)),
        "SDE": (
            EulerMaruyamaSolver(ConditionalVectorFieldSDE(path, zb, sigma), generator=gen),
            ConditionalVectorFieldSDE(path, z1, sigma),
        ),
    }
    curves = {}
    for name, (solver, small) in runs.items():
        x0 = torch.randn(n, 2)
        snaps = simulate_snapshots(solver, x0, ts, keep)
        m_h, v_h = euler_chain_moments(small, 2, ts)
        m_h2, v_h2 = euler_chain_moments(small, 2, uniform_time_grid(2 * steps, 0.0, t_end))
        worst = {"mean": (-1.0, 0.0, 0.0, 0.0), "var": (-1.0, 0.0, 0.0, 0.0)}
        curves[name] = []
        for t, k, x in zip(check_t, keep, snaps):
            mean, var = x.double().mean(0), x.double().var(0).mean()
            curves[name].append((mean, var))
            step_m = 3 * (m_h[k] - m_h2[2 * k]).abs()
            step_v = 3 * (v_h[k] - v_h2[2 * k]).abs().max()
            v = closed_var[t]
            tol_m = Z * math.sqrt(v / n) + step_m  # per coordinate
            err_m = (mean - closed_mean[t]).abs()
            ratio = (err_m / tol_m).max().item()
            j = int((err_m / tol_m).argmax())
            if ratio > worst["mean"][0]:
                worst["mean"] = (ratio, t, err_m[j].item(), tol_m[j].item())
            tol_v = Z * v * math.sqrt(2 / (nn - 1)) + step_v.item()
            err_v = abs(var.item() - v)
            if err_v / tol_v > worst["var"][0]:
                worst["var"] = (err_v / tol_v, t, err_v, tol_v)
        for key, label in (("mean", "|mean - alpha_t z|"), ("var", "|Var - beta_t^2|")):
            _, t, err, tol = worst[key]
            res.at_most(f"{name}: {label} (worst t={t:g})", err, tol)

    # figure: trajectories, samples at several t with the closed-form 2-sigma circles, moments
    fig, axes = subplots(4, size=4.2)
    small_ts = uniform_time_grid(steps, 0.0, t_end)
    zs = z.expand(25, 2)
    ode_tr = EulerSolver(ConditionalVectorFieldODE(path, zs)).simulate_with_trajectory(torch.randn(25, 2), small_ts)
    sde_tr = EulerMaruyamaSolver(ConditionalVectorFieldSDE(path, zs, sigma), generator=gen).simulate_with_trajectory(
        torch.randn(25, 2), small_ts
    )
    for ax, tr, name in ((axes[0], ode_tr, "ODE"), (axes[1], sde_tr, "SDE (sigma = 0.5)")):
        for i in range(tr.shape[0]):
            ax.plot(tr[i, :, 0], tr[i, :, 1], lw=0.6, alpha=0.7)
        for t in check_t:
            a = closed_mean[t].numpy()
            r = 2 * math.sqrt(closed_var[t])
            ang = np.linspace(0, 2 * np.pi, 100)
            ax.plot(a[0] + r * np.cos(ang), a[1] + r * np.sin(ang), "k--", lw=0.6)
        ax.plot(*z.numpy(), "r*", ms=12)
        ax.set_title(f"conditional {name} to z\n(dashed: alpha_t z ± 2 beta_t)", fontsize=9)
        ax.set_aspect("equal")
    tt = np.array(check_t)
    fine = torch.linspace(0, t_end, 200, dtype=torch.float64)
    axes[2].plot(fine, sched.alpha(fine) * 2.0, "k-", lw=1, label="alpha_t z_1")
    axes[3].plot(fine, sched.beta(fine) ** 2, "k-", lw=1, label="beta_t^2")
    for name, mk in (("ODE", "o"), ("SDE", "s")):
        axes[2].plot(tt, [c[0][0].item() for c in curves[name]], mk, label=f"{name} sample mean")
        axes[3].plot(tt, [c[1].item() for c in curves[name]], mk, label=f"{name} sample variance")
    axes[2].set_xlabel("t")
    axes[3].set_xlabel("t")
    axes[2].legend(fontsize=8)
    axes[3].legend(fontsize=8)
    axes[2].set_title("mean (first coordinate)")
    axes[3].set_title("variance")
    ctx.save(res, fig, "06_conditional_path.png")
    return res
