"""Checks 2-5: Brownian motion, Ornstein-Uhlenbeck, Gaussian Euler-Maruyama increments, Langevin."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from imgflow.core import EulerMaruyamaSolver, uniform_time_grid
from toy.checks.base import CheckResult, Context, Z, simulate_snapshots
from toy.densities import Gaussian, GaussianMixture
from toy.metrics import energy_distance, excess_kurtosis
from toy.plotting import contour, scatter, subplots
from toy.processes import BrownianMotion, LangevinDynamics, OrnsteinUhlenbeck


def _generator(ctx: Context, name: str) -> torch.Generator:
    return torch.Generator().manual_seed(ctx.seed_for(name))


# --- 2 ---------------------------------------------------------------------------------------


def check_brownian_variance(ctx: Context) -> CheckResult:
    """Brownian motion dX = sigma dW from 0 has Var[X_t] = sigma^2 t.

    Setup: sigma = 1.5, 100 Euler-Maruyama steps to T = 2, n paths in 2-D; the variance at
    t = 0.5, 1, 1.5, 2 pools both coordinates (N = 2n independent values).

    Tolerance: EM is exact for Brownian motion (its increments are exactly N(0, sigma^2 h)),
    so only sampling error remains: the sample variance of N Gaussian values has relative
    standard error sqrt(2 / (N - 1)); we allow Z = 5 standard errors on Var / (sigma^2 t).
    """
    res = CheckResult("02_brownian_variance", "Brownian motion: Var[X_t] = sigma^2 t")
    sigma, horizon, steps = 1.5, 2.0, 100
    n = ctx.sizes.n_paths
    solver = EulerMaruyamaSolver(BrownianMotion(sigma), generator=_generator(ctx, res.name))
    ts = uniform_time_grid(steps, 0.0, horizon)
    idx = [25, 50, 75, 100]
    snaps = simulate_snapshots(solver, torch.zeros(n, 2), ts, idx)
    se = math.sqrt(2.0 / (2 * n - 1))
    ratios = []
    for i, x in zip(idx, snaps):
        t = ts[i].item()
        ratio = x.var(0).mean().item() / (sigma**2 * t)  # mean of the two coordinate variances
        ratios.append(ratio)
        res.near(f"Var[X_t] / (sigma^2 t) at t={t:g}", ratio, 1.0, Z * se)

    fig, (ax0, ax1, ax2) = subplots(3, size=4.2)
    small = EulerMaruyamaSolver(BrownianMotion(sigma), generator=_generator(ctx, res.name + "/plot"))
    traj = small.simulate_with_trajectory(torch.zeros(12, 2), ts)
    for k in range(traj.shape[0]):
        ax0.plot(traj[k, :, 0], traj[k, :, 1], lw=0.7)
    ax0.set_title("2-D Brownian paths (sigma = 1.5)")
    ax0.set_aspect("equal")
    tt = ts.numpy()
    for k in range(traj.shape[0]):
        ax1.plot(tt, traj[k, :, 0], lw=0.7)
    ax1.fill_between(tt, -2 * sigma * np.sqrt(tt), 2 * sigma * np.sqrt(tt), color="grey", alpha=0.2, label="± 2 sigma sqrt(t)")
    ax1.set_xlabel("t")
    ax1.set_title("first coordinate vs t")
    ax1.legend(fontsize=8)
    ax2.plot(tt, sigma**2 * tt, "k-", label="sigma^2 t")
    tv = [ts[i].item() for i in idx]
    vv = [r * sigma**2 * t for r, t in zip(ratios, tv)]
    ax2.errorbar(tv, vv, yerr=[Z * se * sigma**2 * t for t in tv], fmt="o", label=f"sample variance (n={n}), ±5 SE")
    ax2.set_xlabel("t")
    ax2.set_title("Var[X_t]")
    ax2.legend(fontsize=8)
    ctx.save(res, fig, "02_brownian_variance.png")
    return res


# --- 3 ---------------------------------------------------------------------------------------


def check_ou(ctx: Context) -> CheckResult:
    """Ornstein-Uhlenbeck dX = -theta X dt + sigma dW: stationary law and the theta t collapse.

    (a) theta = 1, sigma = 1 (D = sigma^2 / 2 theta = 0.5), start x0 = (4, -4), h = 0.01,
    T = 10. EM is the AR(1) chain X' = (1 - theta h) X + sigma sqrt(h) xi, whose stationary
    variance is D / (1 - theta h / 2): a relative bias theta h / 2 = 0.005. The start is
    forgotten up to |x0| e^{-theta T} = 2e-4. Tolerances: mean 0 within
    |x0| e^{-theta T} + Z sqrt(D / N); Var / D within 1 +- (theta h / 2 + Z sqrt(2 / (N - 1))),
    with N = 2n values (both coordinates), Z = 5.

    (b) Equal D = 1 with theta in {0.5, 1, 2}, sigma = sqrt(2 theta D), from x0 = 0, steps
    h = ds / theta with ds = 0.01. In scaled time s = theta t the EM chains are identical in
    law (X' = (1 - ds) X + sqrt(2 D ds) xi for every theta), so their variance curves may
    differ only by sampling: each has standard error <= D sqrt(2 / (N - 1)), a difference
    sqrt(2) times that; we allow Z = 5 of them at each of 12 values of s. Against the closed
    form D (1 - e^{-2s}) the EM curve is additionally biased by at most D ds (the factor
    1 / (1 - ds / 2) and (1 - ds)^{2k} vs e^{-2s}), so that comparison allows D ds more.
    """
    res = CheckResult("03_ornstein_uhlenbeck", "OU: stationary N(0, sigma^2 / 2 theta) and theta t collapse")
    n = ctx.sizes.n_paths
    nn = 2 * n
    # (a) stationary law
    theta, sigma, h, horizon = 1.0, 1.0, 0.01, 10.0
    ou = OrnsteinUhlenbeck(theta, sigma)
    d = ou.stationary_variance
    x0 = torch.tensor([4.0, -4.0])
    steps = round(horizon / h)
    ts = uniform_time_grid(steps, 0.0, horizon)
    solver = EulerMaruyamaSolver(ou, generator=_generator(ctx, res.name + "/a"))
    (x_end,) = simulate_snapshots(solver, x0.expand(n, 2).clone(), ts, [steps])
    mean_tol = 4.0 * math.exp(-theta * horizon) + Z * math.sqrt(d / nn)
    res.at_most("stationary |mean| (max over coords)", x_end.mean(0).abs().max().item(), mean_tol)
    res.near("stationary Var / (sigma^2 / 2 theta)", x_end.var(0).mean().item() / d, 1.0, theta * h / 2 + Z * math.sqrt(2 / (nn - 1)))

    # (b) collapse in theta t
    dd, ds, s_max = 1.0, 0.01, 3.0
    thetas = (0.5, 1.0, 2.0)
    s_steps = round(s_max / ds)
    keep = list(range(25, s_steps + 1, 25))  # s = 0.25, 0.5, ..., 3.0
    s_vals = np.array([k * ds for k in keep])
    curves = {}
    for th in thetas:
        proc = OrnsteinUhlenbeck(th, math.sqrt(2 * th * dd))
        ts_b = uniform_time_grid(s_steps, 0.0, s_max / th)
        sol = EulerMaruyamaSolver(proc, generator=_generator(ctx, res.name + f"/b{th}"))
        snaps = simulate_snapshots(sol, torch.zeros(n, 2), ts_b, keep)
        curves[th] = np.array([x.var(0).mean().item() for x in snaps])
    spread = max(np.abs(curves[a] - curves[b]).max() for a in thetas for b in thetas) / dd
    se = math.sqrt(2 / (nn - 1))
    res.at_most("max |Var_i(s) - Var_j(s)| / D across theta (s = theta t)", spread, Z * math.sqrt(2) * se)
    closed = dd * (1 - np.exp(-2 * s_vals))
    worst = max(np.abs(c - closed).max() for c in curves.values()) / dd
    res.at_most("max |Var(s) - D(1 - e^{-2s})| / D", worst, ds + Z * se)

    # figure
    fig, axes = subplots(4, size=4.0)
    fine_s = np.linspace(0, s_max, 200)
    for th in thetas:
        proc = OrnsteinUhlenbeck(th, math.sqrt(2 * th * dd))
        ts_p = uniform_time_grid(s_steps, 0.0, s_max / th)
        tr = EulerMaruyamaSolver(proc, generator=_generator(ctx, res.name + f"/p{th}")).simulate_with_trajectory(
            torch.full((5, 1), 3.0), ts_p
        )
        for k in range(tr.shape[0]):
            axes[0].plot(ts_p.numpy(), tr[k, :, 0].numpy(), lw=0.6, color=f"C{thetas.index(th)}", label=f"theta={th}" if k == 0 else None)
        axes[1].plot(ts_p.numpy()[[0, *keep]], np.r_[0.0, curves[th]], "o-", ms=3, label=f"theta={th}")
        axes[2].plot(s_vals, curves[th], "o", ms=4, label=f"theta={th}")
    axes[0].set_title("OU paths from x0 = 3, D = 1")
    axes[0].set_xlabel("t")
    axes[0].legend(fontsize=8)
    axes[1].set_title("Var[X_t] vs t")
    axes[1].set_xlabel("t")
    axes[1].legend(fontsize=8)
    axes[2].plot(fine_s, dd * (1 - np.exp(-2 * fine_s)), "k-", label="D (1 - exp(-2 theta t))")
    axes[2].set_title("collapse: Var vs theta t")
    axes[2].set_xlabel("theta t")
    axes[2].legend(fontsize=8)
    xs = x_end[:, 0].numpy()
    axes[3].hist(xs, bins=80, density=True, alpha=0.6, label="X_T (from x0 = 4)")
    grid = np.linspace(xs.min(), xs.max(), 200)
    axes[3].plot(grid, np.exp(-(grid**2) / (2 * d)) / math.sqrt(2 * math.pi * d), "k-", label="N(0, sigma^2 / 2 theta)")
    axes[3].set_title("stationary law, theta = sigma = 1")
    axes[3].legend(fontsize=8)
    ctx.save(res, fig, "03_ornstein_uhlenbeck.png")
    return res


# --- 4 ---------------------------------------------------------------------------------------


class BuggyBrownianMotion(BrownianMotion):
    """The lab's trap: a *random* diffusion coefficient sigma * randn_like(x).

    Euler-Maruyama then adds g sqrt(h) xi = sigma sqrt(h) xi' xi, a product of two Gaussians:
    variance still sigma^2 h, but excess kurtosis E[(xi' xi)^4] / 1 - 3 = 9 - 3 = 6.
    """

    def diffusion_coefficient(self, x: Tensor, t: Tensor) -> Tensor:
        return self.sigma * torch.randn_like(x)


def check_em_increment_gaussian(ctx: Context) -> CheckResult:
    """One Euler-Maruyama increment is Gaussian; the random-diffusion bug is detected.

    Setup: one EM step of size h = 0.01 of BrownianMotion(sigma = 1) from x = 0 for n/2 points
    in 2-D (n values). Sample excess kurtosis k = m4 / m2^2 - 3; by the delta method its
    standard error is sqrt(24 / n) for a Gaussian and sqrt(5760 / n) for the product of two
    independent standard Gaussians (moments 1, 9, 225, 11025: n Var(k) = mu8 - mu4^2
    + 4 mu4^2 Var(m2) / mu2^2 ... = 10944 + 2592 - 7776 = 5760), whose kurtosis is 6.

    Pass requires all of: ours within 0 +- Z sqrt(24 / n); the buggy one outside that band
    (detected); the buggy one within 6 +- Z sqrt(5760 / n) (the math of the bug); and our
    diffusion coefficient deterministic (two calls identical). Z = 5.
    """
    res = CheckResult("04_em_increment_gaussian", "EM increment is Gaussian; random diffusion (bug) detected")
    n = ctx.sizes.n_kurtosis
    h = 0.01
    ts = torch.tensor([0.0, h])
    ours = EulerMaruyamaSolver(BrownianMotion(1.0), generator=_generator(ctx, res.name)).simulate(torch.zeros(n // 2, 2), ts)
    ctx.reseed(res.name + "/buggy")  # the buggy coefficient draws from the global RNG
    buggy = EulerMaruyamaSolver(BuggyBrownianMotion(1.0), generator=_generator(ctx, res.name + "/b")).simulate(
        torch.zeros(n // 2, 2), ts
    )
    band = Z * math.sqrt(24 / n)
    k_ours, k_buggy = excess_kurtosis(ours), excess_kurtosis(buggy)
    res.near("ours: excess kurtosis of X_h - X_0", k_ours, 0.0, band)
    res.at_least("buggy: excess kurtosis (must leave the Gaussian band)", k_buggy, band)
    res.near("buggy: excess kurtosis vs theory (6)", k_buggy, 6.0, Z * math.sqrt(5760 / n))
    x = torch.randn(8, 2)
    t = torch.full((8,), 0.3)
    bm = BrownianMotion(1.0)
    spread = (bm.diffusion_coefficient(x, t) - bm.diffusion_coefficient(x, t)).abs().max().item()
    res.at_most("ours: max |g(x,t) - g(x,t)| over two calls", spread, 0.0)

    fig, (ax0, ax1) = subplots(2, size=4.5)
    s = math.sqrt(h)
    bins = np.linspace(-8 * s, 8 * s, 161)
    grid = np.linspace(-8 * s, 8 * s, 400)
    pdf = np.exp(-(grid**2) / (2 * h)) / math.sqrt(2 * math.pi * h)
    for ax, logy in ((ax0, False), (ax1, True)):
        kind = "step" if logy else "stepfilled"
        ax.hist(ours.reshape(-1).numpy(), bins=bins, density=True, histtype=kind, alpha=0.6, label=f"ours (kurtosis {k_ours:+.3f})")
        ax.hist(buggy.reshape(-1).numpy(), bins=bins, density=True, histtype=kind, alpha=0.6,
                label=f"buggy g = sigma randn (kurtosis {k_buggy:+.2f})")
        ax.plot(grid, pdf, "k-", lw=1, label="N(0, sigma^2 h)")
        if logy:
            ax.set_yscale("log")
            ax.set_ylim(bottom=1e-3)
        ax.set_xlabel("one-step increment")
        ax.legend(fontsize=7)
    ax0.set_title("EM increment, h = 0.01")
    ax1.set_title("same, log density: heavy tails of the bug")
    ctx.save(res, fig, "04_em_increment_gaussian.png")
    return res


# --- 5 ---------------------------------------------------------------------------------------


def langevin_target() -> GaussianMixture:
    """Five unit-std modes on a circle of radius 2.5: adjacent modes 2.9 std apart, so the
    overdamped Langevin dynamics mixes between them in O(1) time (well-separated modes would
    equilibrate their weights only on exponentially long time scales)."""
    return GaussianMixture.symmetric_2D(nmodes=5, std=1.0, scale=2.5)


def check_langevin(ctx: Context) -> CheckResult:
    """Langevin dynamics dX = sigma^2/2 grad log p dt + sigma dW from a far start reaches p.

    Setup: p = `langevin_target()`, sigma = sqrt(2) (drift = score), n chains started at
    N((8, 8), 0.25 I), far outside p, Euler-Maruyama with step dt to T = 30.

    Why T = 30: with sigma = sqrt(2) the slowest relaxation rate of overdamped Langevin on a
    near-Gaussian target is 1 / lambda_max(Cov p); the ring has per-axis variance
    s^2 + r^2 / 2 = 1 + 3.1 = 4.1, so the mean relaxes like e^{-t / 4.1} and the energy
    distance (quadratic in a small displacement) like e^{-t / 2.05}: from ~20 at t = 0 to
    ~1e-5 at t = 30, below the null band of either run size.

    Distance: energy distance (toy.metrics) between the n chain states and n fresh target
    samples. Tolerance = null band: mean + 4 std of the distance between two independent
    target samples of the same size n -- what an exact sampler scores; full estimates it from
    `null_repeats` repeats, quick (sizes.null_exact) from the distance's exact null variance
    (`toy.metrics.null_energy_band`: mean 0, std to ~1 % instead of ~18 % from 16 repeats).
    The Euler-Maruyama (unadjusted Langevin) bias is O(dt): for a unit-variance mode the
    stationary variance is off by the factor 1 / (1 - dt / 2), i.e. 1% (quick, dt = 0.02) or
    0.25% (full, dt = 0.005); the energy distance of such a scale change is quadratic in it
    (~1e-4 and ~1e-5), below the respective null bands (measured 7.7e-3 at n = 4000 from 16
    repeats, 4.3e-3 exact; 1.6e-3 at n = 10000). The start must be clearly above the band: at
    least 10 x band.

    Power (measured while writing this check): Langevin with the drift sigma^2 grad log p
    (the factor 1/2 dropped; it samples p^2, whose per-axis variance is 3.4 instead of 4.1)
    scores 0.016-0.019 at n = 2000-5000, 2-4.5 x the band -- why quick uses n = 4000 and
    16 null repeats rather than n = 2000 and 10 (re-measured with the exact band, quick, run
    seeds 0-3: 0.0072-0.011 against 0.0043, 1.7-2.6 x; a band from 16 repeats, 7.7e-3 at
    seed 0, would have let the lowest through). Because the energy distance is weak against
    such a change of scale, a second row compares the mean squared distance to the mean,
    E|X_T - m|^2, with tr Cov(p) in closed form: tolerance Z = 5 standard errors (the sample
    std of |X - m|^2 over sqrt(n)) plus the Euler-Maruyama bias, bounded by twice the
    within-mode inflation tr(Sigma_k) (dt / 2) / (1 - dt / 2) (exact for one Gaussian mode,
    doubled because the modes interact). The dropped-1/2 bug gives 0.83 on this row.
    """
    res = CheckResult("05_langevin", "Langevin dynamics reaches a Gaussian-mixture target")
    ctx.reseed(res.name)
    target = langevin_target()
    n = ctx.sizes.n_langevin
    dt = ctx.sizes.langevin_dt
    horizon = 30.0
    steps = round(horizon / dt)
    ts = uniform_time_grid(steps, 0.0, horizon)
    source = Gaussian(torch.tensor([8.0, 8.0]), 0.25 * torch.eye(2))
    x0 = source.sample(n)
    solver = EulerMaruyamaSolver(LangevinDynamics(target, math.sqrt(2.0)), generator=_generator(ctx, res.name))
    snap_t = [0.0, 1.0, 3.0, 8.0, 15.0, horizon]
    snap_i = [round(t / dt) for t in snap_t]
    snaps = simulate_snapshots(solver, x0, ts, snap_i)
    null = ctx.null_band(target.sample, n, ctx.sizes.null_repeats)
    d_start = energy_distance(snaps[0], target.sample(n)).item()
    d_end = energy_distance(snaps[-1], target.sample(n)).item()
    res.at_most("energy distance to target at T=30", d_end, null["band"])
    res.at_least("energy distance at start (>= 10 x null band)", d_start, 10 * null["band"])
    # second moment: E|X - m|^2 against tr Cov p (closed form for a mixture)
    x_end = snaps[-1].double()
    sq = (x_end - target.mean().double()).pow(2).sum(1)
    exact_tr = torch.trace(target.covariance()).item()
    within = torch.stack([torch.trace(c) for c in target.covs]).mean().item()
    bias = 2 * within * (dt / 2) / (1 - dt / 2)
    res.near(
        "E|X_T - m|^2 / tr Cov(p)", sq.mean().item() / exact_tr, 1.0, (Z * sq.std().item() / math.sqrt(n) + bias) / exact_tr
    )
    # the figure's curve uses 1000 chains (cheap); the rows above use all n
    m = min(n, 1000)
    dists = [energy_distance(x[:m], target.sample(m)).item() for x in snaps]
    null_m = ctx.null_band(target.sample, m, 10)

    fig, axes = subplots(len(snap_t) + 1, size=3.3)
    bounds = (-6.0, 10.0, -6.0, 10.0)
    for ax, t, x in zip(axes, snap_t, snaps):
        contour(ax, target.log_density, bounds, levels=10)
        scatter(ax, x, max_points=1500, s=1.5, color="C3")
        ax.set_xlim(bounds[:2])
        ax.set_ylim(bounds[2:])
        ax.set_title(f"t = {t:g}")
        ax.set_aspect("equal")
    ax = axes[-1]
    ax.semilogy(snap_t, np.maximum(dists, 1e-6), "o-", label=f"energy distance ({m} chains)")
    ax.axhline(null_m["band"], color="k", ls="--", label=f"null band at n={m}")
    ax.set_xlabel("t")
    ax.legend(fontsize=7)
    ax.set_title(f"rows: n = {n}, ED(T) = {d_end:.1e} <= {null['band']:.1e}", fontsize=8)
    ctx.save(res, fig, "05_langevin.png")
    return res
