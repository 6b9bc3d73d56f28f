"""Check 1: observed convergence orders of the core's fixed-step ODE solvers."""

from __future__ import annotations

import math

import numpy as np
import torch

from imgflow.core import SOLVERS, uniform_time_grid
from toy.checks.base import CheckResult, Context
from toy.plotting import subplots
from toy.processes import LinearDecayODE

#: the fixed-step ODE solvers checked, by their registry names (classes and orders come from the registry)
CHECKED = ("euler", "midpoint", "heun", "rk4")


def _label(name: str) -> str:
    return {"rk4": "RK4"}.get(name, name.capitalize())


def check_ode_convergence(ctx: Context) -> CheckResult:
    """Euler, midpoint, Heun and RK4 on u = -theta x have observed orders 1, 2, 2, 4.

    Setup: theta = 2, T = 1, float64, x0 random; error e(n) = max |X_n - exp(-theta T) x0| for
    n = 8, 16, 32, 64 steps; observed order = log2(e(32) / e(64)).

    Tolerance |order - p| <= 0.1, from the math: on the linear test equation one step of each
    method multiplies x by R(-theta h), the degree-p Taylor polynomial of exp (true for all
    four). Hence e(h) = C h^p (1 + a theta h + O(h^2)) with |a| = O(1) (a = 1/6 for Euler
    with theta T = 2), and log2(e(h) / e(h/2)) = p + a theta h / (2 ln 2) + O(h^2):
    at theta h = 1/16 the deviation is about 0.045 |a|, well inside 0.1. Round-off (float64,
    RK4 error ~1e-8 at n = 64) is negligible. The tolerance does not depend on the run size.
    """
    res = CheckResult("01_ode_convergence", "fixed-step solver orders on u = -theta x")
    ctx.reseed(res.name)
    theta, horizon = 2.0, 1.0
    ode = LinearDecayODE(theta)
    x0 = torch.randn(64, 2, dtype=torch.float64)
    exact = ode.exact(x0, horizon)
    steps = [8, 16, 32, 64]
    errors: dict[str, list[float]] = {}
    for name in CHECKED:
        info = SOLVERS[name]
        errs = []
        for n in steps:
            x = info.cls(ode).simulate(x0, uniform_time_grid(n, 0.0, horizon).double())
            errs.append((x - exact).abs().max().item())
        errors[_label(name)] = errs
        observed = math.log2(errs[-2] / errs[-1])
        res.near(f"{_label(name)} observed order (n=32->64)", observed, info.order, 0.1)

    fig, (ax0, ax1) = subplots(2, size=4.5)
    hs = horizon / np.array(steps)
    for name, errs in errors.items():
        ax0.loglog(hs, errs, "o-", label=f"{name} (p={SOLVERS[name.lower()].order:g})")
    for p in (1, 2, 4):
        ax0.loglog(hs, errors["Euler" if p == 1 else "Heun" if p == 2 else "RK4"][0] * (hs / hs[0]) ** p, "k:", lw=0.8)
    ax0.set_xlabel("step h")
    ax0.set_ylabel("max |X_T - exp(-theta T) x0|")
    ax0.set_title("global error vs step (dotted: slopes 1, 2, 4)")
    ax0.legend(fontsize=8)
    x1 = torch.ones(1, 1, dtype=torch.float64)
    fine = torch.linspace(0, horizon, 200, dtype=torch.float64)
    ax1.plot(fine, torch.exp(-theta * fine), "k-", label="exp(-theta t)")
    for name in CHECKED:
        ts = uniform_time_grid(4, 0.0, horizon).double()
        traj = SOLVERS[name].cls(ode).simulate_with_trajectory(x1, ts)[0, :, 0]
        ax1.plot(ts, traj, "o--", label=f"{_label(name)}, 4 steps")
    ax1.set_xlabel("t")
    ax1.set_title("u = -2x from x0 = 1 with 4 steps")
    ax1.legend(fontsize=8)
    ctx.save(res, fig, "01_ode_convergence.png")
    return res
