"""The lab's validations: each check returns numbers against tolerances plus a PNG.

Checks 1-6 test the core's solvers, processes and conditional paths against closed forms;
7-11 train models once per run (toy.checks.trained_models) and compare them with the exact marginal
fields of a Gaussian mixture (toy.gmm_fields), 11 with its exact flow map, and 12 distils that map from the
exact velocity.
"""

from __future__ import annotations

from collections.abc import Callable

from toy.checks.base import FULL, QUICK, CheckResult, Context, Measurement, Sizes
from toy.checks.distillation import check_distillation
from toy.checks.flow_map import check_flow_map
from toy.checks.learned import check_flow_matching, check_interpolant_objective, check_score_matching, check_sde_sampling
from toy.checks.numerics import check_ode_convergence
from toy.checks.paths import check_conditional_path
from toy.checks.processes import check_brownian_variance, check_em_increment_gaussian, check_langevin, check_ou

#: every check in table order
ALL_CHECKS: list[Callable[[Context], CheckResult]] = [
    check_ode_convergence,
    check_brownian_variance,
    check_ou,
    check_em_increment_gaussian,
    check_langevin,
    check_conditional_path,
    check_flow_matching,
    check_score_matching,
    check_sde_sampling,
    check_interpolant_objective,
    check_flow_map,
    check_distillation,
]

__all__ = ["ALL_CHECKS", "FULL", "QUICK", "CheckResult", "Context", "Measurement", "Sizes"]
