"""Check 12: a flow map distilled from a perfect teacher (the mixture's exact velocity) beats MeanFlow from scratch."""

from __future__ import annotations

import torch

from imgflow.core import FlowMap, FlowMapSolver, uniform_time_grid
from toy.checks import trained_models
from toy.checks.base import CheckResult, Context
from toy.checks.flow_map import draw_panels, exact_flow_map
from toy.metrics import relative_l2
from toy.plotting import subplots

#: The distilled map's achievable error at each run size (relative L2 against the exact flow map, as check 11's
#: MAP_TOLERANCE): quick, seeds 0-4 measured 0.026-0.035 at 1 step (0.031 for seed 0), so 0.07 (2x the worst). Full:
#: not measured (check 11 alone takes 22 minutes at full size), the quick tolerance kept.
MAP_TOLERANCE = {"quick": 0.07, "full": 0.07}

#: The issue's goal: the distilled error at most this share of the from-scratch error, at 1 and at 2 steps. Quick, seeds
#: 0-4 measured 0.30-0.47 at 1 step (seed 0: 0.43) and 0.17-0.30 at 2 steps.
RATIO = 0.5

#: The JVP-free Lagrangian form's bound on the same ratio: it beats MeanFlow from scratch, by less. Quick, seeds 0-4
#: measured 0.41-0.67 at 1 step and 0.35-0.50 at 2 steps, so 0.8 (1.2x the worst); it does not reach RATIO on every seed.
LAGRANGIAN_RATIO = 0.8


def map_errors(ctx: Context, model: torch.nn.Module, x0: torch.Tensor, exact: torch.Tensor) -> dict[int, float]:
    """{steps: ||FlowMapSolver(model) from x0 - Phi(x0)|| / ||Phi(x0) - x0||} for 1 and 2 uniform steps."""
    out = {}
    with torch.inference_mode():
        for steps in (1, 2):
            x1 = FlowMapSolver(FlowMap(model)).simulate(x0, uniform_time_grid(steps))
            out[steps] = relative_l2(x1 - x0, exact - x0)
    return out


def check_distillation(ctx: Context) -> CheckResult:
    """A flow map distilled from the exact mixture velocity lands at most half as far from the exact map as MeanFlow from scratch.

    Setup: check 11's target, path, network, optimiser and steps (its `flow_map_model` is the from-scratch row). The
    teacher is the mixture's exact marginal velocity (toy.gmm_fields), a perfect teacher: teacher-guided MeanFlow
    (imgflow.core.flow_map_distillation.teacher_mean_flow_loss) puts it in the JVP tangent and the target in place of
    data - noise, whose variance is what limits MeanFlow from scratch at a fixed budget. The JVP-free discrete
    Lagrangian form (step fraction 0.5 -> 0.05) is trained on the same budget and must beat the scratch model too.
    Rows, on n_samples noise draws x_0 (the exact map Phi as in check 11):
    - the distilled map's error at 1 and 2 steps, each at most RATIO times the from-scratch model's at the same steps
      (the issue's goal; a distillation that learned nothing from the teacher scores like the scratch model, ratio ~1);
    - the distilled map's error at 1 step within MAP_TOLERANCE (the measured error at this budget, 2x: see there);
    - the Lagrangian map's error at 1 and 2 steps at most LAGRANGIAN_RATIO times the scratch model's.
    """
    res = CheckResult("12_distillation", "flow map distilled from the exact velocity vs MeanFlow from scratch")
    scratch, _ = trained_models.flow_map_model(ctx)
    distilled, hist = trained_models.distilled_flow_map_model(ctx, "mean_flow")
    lagrangian, hist_l = trained_models.distilled_flow_map_model(ctx, "lagrangian")
    n = ctx.sizes.n_samples
    ctx.reseed(res.name)
    x0 = torch.randn(n, 2)
    exact = exact_flow_map(ctx, x0).float()
    err_scratch = map_errors(ctx, scratch, x0, exact)
    err = map_errors(ctx, distilled, x0, exact)
    err_l = map_errors(ctx, lagrangian, x0, exact)
    for steps in (1, 2):
        res.at_most(f"distilled / from scratch, {steps} step(s): {err[steps]:.4f} / {err_scratch[steps]:.4f}",
                    err[steps] / err_scratch[steps], RATIO)
    res.at_most("distilled 1 step: ||x0 + u(x0,0,1) - Phi(x0)|| / ||Phi(x0) - x0||", err[1], MAP_TOLERANCE[ctx.sizes.label])
    for steps in (1, 2):
        res.at_most(f"Lagrangian (no JVP) / from scratch, {steps} step(s): {err_l[steps]:.4f} / {err_scratch[steps]:.4f}",
                    err_l[steps] / err_scratch[steps], LAGRANGIAN_RATIO)

    with torch.inference_mode():
        panels = [(FlowMapSolver(FlowMap(m)).simulate(x0, uniform_time_grid(1)), f"{name}, 1 NFE (map err {e[1]:.3f})", c)
                  for m, name, e, c in ((scratch, "MeanFlow from scratch", err_scratch, "C3"),
                                        (distilled, "distilled (MeanFlow, exact teacher)", err, "C1"),
                                        (lagrangian, "distilled (Lagrangian)", err_l, "C4"))]
    panels.append((exact, "exact flow map Phi(x0)", "C2"))
    fig, axes = subplots(5, size=3.6)
    draw_panels(axes, trained_models.flow_map_lab(ctx), panels)
    axes[4].semilogy(hist, lw=0.3, label="MeanFlow distillation")
    axes[4].semilogy(hist_l, lw=0.3, label="Lagrangian")
    axes[4].legend(fontsize=7)
    axes[4].set_title("distillation losses", fontsize=8)
    axes[4].set_xlabel("iteration")
    ctx.save(res, fig, "12_distillation.png")
    return res
