"""Shared math: schedules, paths, conversions, losses, dynamics and solvers."""

from imgflow.core.broadcast import batch_times, expand_like
from imgflow.core.conversions import PREDICTIONS, SINGULAR_AT, convert
from imgflow.core.distributions import Sampleable, StandardNormal
from imgflow.core.dynamics import (
    ODE,
    SDE,
    ClassifierFreeGuidance,
    ConditionalVectorFieldODE,
    ConditionalVectorFieldSDE,
    FlowMap,
    InterpolantSDE,
    LangevinFlowSDE,
    LearnedVectorFieldODE,
    ModelField,
)
from imgflow.core.losses import (
    LOSSES,
    REDUCTIONS,
    flow_matching_loss,
    interpolant_loss,
    noise_prediction_loss,
    per_sample_reduce,
    score_matching_loss,
)
from imgflow.core.paths import GaussianPath, InterpolantPath, LinearPath
from imgflow.core.schedules import (
    SCHEDULES,
    CallableSchedule,
    CosineSchedule,
    LinearSchedule,
    Schedule,
    SqrtSchedule,
    schedule_from_name,
)
from imgflow.core.solvers import (
    SOLVERS,
    AdaptiveOptions,
    AdaptiveSolver,
    EulerMaruyamaOptions,
    EulerMaruyamaSolver,
    EulerSolver,
    ExplicitRungeKutta,
    FlowMapSolver,
    HeunSolver,
    MidpointSolver,
    NoOptions,
    RK4Solver,
    Solver,
    SolverInfo,
    make_solver,
    register_solver,
    solver_info,
)
from imgflow.core.time_grids import TIME_GRIDS, named_time_grid, power_time_grid, uniform_time_grid
from imgflow.core.time_sampling import TIME_PAIR_SAMPLERS, TIME_SAMPLINGS, sample_time_pairs, sample_times

__all__ = [name for name in dir() if not name.startswith("_")]
