"""Fixed-step and adaptive solvers for `ODE` and `SDE` dynamics, with NFE counting.

A time grid `ts` is a 1-D tensor (T,) shared by the batch; it may decrease (integrating
backwards). `simulate` returns the state at ts[-1]; `simulate_with_trajectory` returns the
states at every grid time, shape (B, T, ...). After either call `solver.nfe` holds the number
of drift evaluations that call made (one evaluation of a batch counts once).
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from imgflow.core.dynamics import ODE, SDE, FlowMap
from imgflow.core.progress import progress_bar
from imgflow.core.registry import Registry

#: draws standard-normal noise shaped like its argument
NoiseSource = Callable[[Tensor], Tensor]

_SINGULAR_TOL = 1e-9


def standard_normal_like(x: Tensor, noise: NoiseSource | None, generator: torch.Generator | None) -> Tensor:
    """N(0, I) shaped like x from `noise` when given (per-sample sources), else torch.randn with `generator`."""
    if noise is not None:
        return noise(x)
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


class Solver(ABC):
    """Common loop: validate the grid, count evaluations, step from ts[i] to ts[i+1]."""

    #: fractions of a step at which the drift is evaluated (the Butcher c's)
    stage_offsets: tuple[float, ...] = (0.0,)
    #: convergence order of the global error for smooth ODEs
    order: float = 1.0

    @classmethod
    def evals_per_step(cls) -> int | None:
        """Function evaluations (NFE) per step; None when the solver chooses its own steps."""
        return len(cls.stage_offsets)

    def __init__(self, dynamics: ODE | SDE, progress: bool = False) -> None:
        self.dynamics = dynamics
        self.progress = progress
        self.nfe = 0

    def drift(self, x: Tensor, t: Tensor) -> Tensor:
        """One counted evaluation of the drift at a scalar time t for the whole batch."""
        self.nfe += 1
        return self.dynamics.drift_coefficient(x, t.expand(x.shape[0]))

    @abstractmethod
    def step(self, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
        """Advance x from time t by h (0-d tensors)."""

    def evaluation_times(self, ts: Tensor) -> Tensor:
        """Every time at which this solver evaluates the dynamics on the grid ts."""
        h = ts[1:] - ts[:-1]
        c = torch.tensor(self.stage_offsets, dtype=ts.dtype, device=ts.device)
        return (ts[:-1, None] + c[None, :] * h[:, None]).reshape(-1)

    def _check_grid(self, ts: Tensor) -> None:
        if ts.dim() != 1 or ts.numel() < 2:
            raise ValueError(f"time grid must be 1-D with at least 2 points, got shape {tuple(ts.shape)}")
        steps = ts[1:] - ts[:-1]
        if not (torch.all(steps > 0) or torch.all(steps < 0)):
            raise ValueError("time grid must be strictly increasing or strictly decreasing")
        evals = self.evaluation_times(ts.double())
        for s in self.dynamics.singular_times:
            if torch.any((evals - s).abs() < _SINGULAR_TOL):
                side = "end" if s >= 0.5 else "start"
                raise ValueError(
                    f"{type(self).__name__} would evaluate {type(self.dynamics).__name__} at t={s:g}, where it is "
                    f"singular; {side} the grid short of it, e.g. uniform_time_grid(n, t_{side}={s - 1e-3 if s >= 0.5 else s + 1e-3:g})"
                )

    def _iterate(self, x: Tensor, ts: Tensor, keep: list[Tensor] | None) -> Tensor:
        ts = ts.to(device=x.device, dtype=x.dtype)
        self._check_grid(ts)
        self.nfe = 0
        if keep is not None:
            keep.append(x)
        for i in progress_bar(range(ts.numel() - 1), enabled=self.progress, leave=False, desc=type(self).__name__):
            x = self.step(x, ts[i], ts[i + 1] - ts[i])
            if keep is not None:
                keep.append(x)
        return x

    @torch.no_grad()
    def simulate(self, x: Tensor, ts: Tensor) -> Tensor:
        """Integrate from ts[0] to ts[-1]; x (B, ...) -> (B, ...)."""
        return self._iterate(x, ts, None)

    @torch.no_grad()
    def simulate_with_trajectory(self, x: Tensor, ts: Tensor) -> Tensor:
        """Integrate and keep every grid state: (B, ...) -> (B, T, ...)."""
        keep: list[Tensor] = []
        self._iterate(x, ts, keep)
        return torch.stack(keep, dim=1)


class ExplicitRungeKutta(Solver):
    """x' = x + h sum_i b_i k_i with k_i = f(x + h sum_j a_ij k_j, t + c_i h)."""

    a: Sequence[Sequence[float]] = ((),)
    b: Sequence[float] = (1.0,)

    def step(self, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
        ks: list[Tensor] = []
        for c_i, a_i in zip(self.stage_offsets, self.a):
            xi = x
            for a_ij, k in zip(a_i, ks):
                if a_ij:
                    xi = xi + (h * a_ij) * k
            ks.append(self.drift(xi, t + c_i * h))
        out = x
        for b_i, k in zip(self.b, ks):
            if b_i:
                out = out + (h * b_i) * k
        return out


class EulerSolver(ExplicitRungeKutta):
    """Forward Euler, order 1, 1 NFE per step."""

    order = 1.0
    stage_offsets = (0.0,)
    a = ((),)
    b = (1.0,)


class MidpointSolver(ExplicitRungeKutta):
    """Explicit midpoint, order 2, 2 NFE per step."""

    order = 2.0
    stage_offsets = (0.0, 0.5)
    a = ((), (0.5,))
    b = (0.0, 1.0)


class HeunSolver(ExplicitRungeKutta):
    """Heun (explicit trapezoid), order 2, 2 NFE per step; evaluates the step's end point."""

    order = 2.0
    stage_offsets = (0.0, 1.0)
    a = ((), (1.0,))
    b = (0.5, 0.5)


class RK4Solver(ExplicitRungeKutta):
    """Classical Runge-Kutta, order 4, 4 NFE per step."""

    order = 4.0
    stage_offsets = (0.0, 0.5, 0.5, 1.0)
    a = ((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0))
    b = (1 / 6, 1 / 3, 1 / 3, 1 / 6)


class EulerMaruyamaSolver(Solver):
    """X' = X + f h + g sqrt(|h|) xi, xi ~ N(0, I): strong order 1/2, 1 NFE per step.

    `noise` draws xi shaped like x (default: torch.randn with `generator`); pass a per-sample
    source to make sample i independent of the batch it is drawn in. An ODE is integrated
    with g = 0 (plain Euler).
    """

    order = 0.5

    def __init__(
        self,
        dynamics: SDE | ODE,
        progress: bool = False,
        generator: torch.Generator | None = None,
        noise: NoiseSource | None = None,
    ) -> None:
        super().__init__(dynamics, progress)
        self.generator = generator
        self.noise = noise

    def _draw(self, x: Tensor) -> Tensor:
        return standard_normal_like(x, self.noise, self.generator)

    def step(self, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
        x_next = x + h * self.drift(x, t)
        if not isinstance(self.dynamics, SDE):
            return x_next
        g = self.dynamics.diffusion_coefficient(x, t.expand(x.shape[0]))
        return x_next + g * torch.sqrt(h.abs()) * self._draw(x)


class AdaptiveSolver(Solver):
    """Adaptive Runge-Kutta through torchdiffeq (dopri5 by default) with error control.

    It may evaluate anywhere in [ts[0], ts[-1]], so the closed interval must avoid the
    dynamics' singular times. `simulate` integrates ts[0] -> ts[-1]; the trajectory variant
    reports the solution at every grid time.
    """

    order = 5.0

    @classmethod
    def evals_per_step(cls) -> int | None:
        return None

    def __init__(
        self,
        dynamics: ODE,
        rtol: float = 1e-5,
        atol: float = 1e-5,
        method: str = "dopri5",
        progress: bool = False,
    ) -> None:
        if isinstance(dynamics, SDE):
            raise TypeError("the adaptive solver integrates ODEs; use EulerMaruyamaSolver for an SDE")
        super().__init__(dynamics, progress)
        self.rtol, self.atol, self.method = rtol, atol, method

    def step(self, x: Tensor, t: Tensor, h: Tensor) -> Tensor:  # pragma: no cover - not used
        raise NotImplementedError("the adaptive solver chooses its own steps; call simulate")

    def _check_grid(self, ts: Tensor) -> None:
        super()._check_grid(ts[[0, -1]])
        lo, hi = sorted((float(ts[0]), float(ts[-1])))
        for s in self.dynamics.singular_times:
            if lo - _SINGULAR_TOL <= s <= hi + _SINGULAR_TOL:
                raise ValueError(
                    f"the adaptive solver may evaluate anywhere in [{lo:g}, {hi:g}], which contains the "
                    f"singular time t={s}; end the interval short of it"
                )

    def _odeint(self, x: Tensor, ts: Tensor) -> Tensor:
        from torchdiffeq import odeint

        ts = ts.to(device=x.device, dtype=x.dtype)
        self._check_grid(ts)
        self.nfe = 0

        def func(t: Tensor, y: Tensor) -> Tensor:
            return self.drift(y, t.reshape(()))

        return odeint(func, x, ts, rtol=self.rtol, atol=self.atol, method=self.method)

    @torch.no_grad()
    def simulate(self, x: Tensor, ts: Tensor) -> Tensor:
        return self._odeint(x, ts[[0, -1]])[-1]

    @torch.no_grad()
    def simulate_with_trajectory(self, x: Tensor, ts: Tensor) -> Tensor:
        return self._odeint(x, ts).movedim(0, 1)


class FlowMapSolver(Solver):
    """Steps with a learned flow map: x_{t+h} = x_t + h u(x_t, t, t + h), 1 NFE per step.

    u(x, t, r) is the average velocity over [t, r] (a MeanFlow model, `FlowMap` dynamics), so
    one step lands where the ODE would after integrating from t to t + h: one or two steps
    make a sample. With r = t the model is its instantaneous velocity and this is Euler.
    """

    order = 1.0

    def __init__(self, dynamics: FlowMap, progress: bool = False) -> None:
        if not isinstance(dynamics, FlowMap):
            raise TypeError("the flow-map solver steps a FlowMap (a model of the average velocity u(x, t, r))")
        super().__init__(dynamics, progress)

    def step(self, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
        self.nfe += 1
        batch = x.shape[0]
        return x + h * self.dynamics.average_velocity(x, t.expand(batch), (t + h).expand(batch))


class ConsistencySolver(Solver):
    """Multi-step flow-map sampling with re-noising (the sampler of consistency models), 1 NFE per step.

    On a grid t_0 < t_1 < ... < t_N = T: at each t_i jump straight to the end with the flow map,
    x_hat = x + (T - t_i) u(x, t_i, T), then (unless t_{i+1} = T) put fresh noise back at the next
    grid time along the path it was trained on, x_{t_{i+1}} = alpha(t_{i+1}) x_hat + beta(t_{i+1}) eps.
    Unlike chained jumps (FlowMapSolver) every evaluation is a long jump to the data, the interval the
    flow map trains most, and errors do not compound: each step restarts from the path's own
    marginal at t_{i+1} (exactly so when x_hat is a data sample). The grid's interior times say how
    much noise each step puts back. `noise` draws eps shaped like x (default: torch.randn with `generator`).
    """

    order = 1.0

    def __init__(self, dynamics: FlowMap, progress: bool = False, generator: torch.Generator | None = None,
                 noise: NoiseSource | None = None) -> None:
        if not isinstance(dynamics, FlowMap) or dynamics.schedule is None:
            raise TypeError("the consistency solver steps a FlowMap that knows its path's schedule: FlowMap(u, schedule)")
        super().__init__(dynamics, progress)
        self.generator = generator
        self.noise = noise
        self._end: Tensor | None = None
        self._steps_left = 0

    def _iterate(self, x: Tensor, ts: Tensor, keep: list[Tensor] | None) -> Tensor:
        self._end = ts[-1].to(device=x.device, dtype=x.dtype)
        self._steps_left = ts.numel() - 1
        return super()._iterate(x, ts, keep)

    def _draw(self, x: Tensor) -> Tensor:
        return standard_normal_like(x, self.noise, self.generator)

    def step(self, x: Tensor, t: Tensor, h: Tensor) -> Tensor:
        self.nfe += 1
        self._steps_left -= 1
        batch, end = x.shape[0], self._end
        x_end = x + (end - t) * self.dynamics.average_velocity(x, t.expand(batch), end.expand(batch))
        if self._steps_left == 0:
            return x_end
        schedule = self.dynamics.schedule
        t_next = t + h
        return schedule.alpha(t_next).to(x.dtype) * x_end + schedule.beta(t_next).to(x.dtype) * self._draw(x)


@dataclass(frozen=True)
class NoOptions:
    """A solver with no settings of its own."""


@dataclass(frozen=True)
class AdaptiveOptions:
    """[sample.adaptive]: the relative and absolute tolerances of dopri5's error control."""

    rtol: float = 1e-4
    atol: float = 1e-4

    def validate(self) -> None:
        if not (self.rtol > 0 and self.atol > 0 and math.isfinite(self.rtol) and math.isfinite(self.atol)):
            raise ValueError(f"rtol and atol must be positive numbers, got {self.rtol} and {self.atol}")


@dataclass(frozen=True)
class EulerMaruyamaOptions:
    """[sample.euler_maruyama]: sde_epsilon, the noise level epsilon of the interpolant SDE it integrates (0 = the ODE)."""

    sde_epsilon: float = 1.0

    def validate(self) -> None:
        if not (self.sde_epsilon >= 0 and math.isfinite(self.sde_epsilon)):
            raise ValueError(f"sde_epsilon must be >= 0, got {self.sde_epsilon}")


@dataclass(frozen=True)
class SolverInfo:
    """What a sampler needs to know about a solver, read off its class.

    `options`: the frozen dataclass of the settings this solver has beyond steps, grid and guidance (its
    `[sample.<name>]` section, `Sampler.sample(..., name=value)` keywords); the fields its class's constructor
    takes are passed to it, the others configure the dynamics it integrates (the SDE's sde_epsilon).
    """

    name: str
    cls: type[Solver]
    stochastic: bool = False  # integrates an SDE (draws noise)
    flow_map: bool = False  # needs a flow-map model (u(x, t, r)); a velocity model cannot use it
    options: type = NoOptions

    @property
    def option_names(self) -> tuple[str, ...]:
        """The names of this solver's own settings (the fields of `options`)."""
        return tuple(f.name for f in dataclasses.fields(self.options))

    def solver_kwargs(self, options: Any) -> dict[str, Any]:
        """The fields of `options` that this solver's constructor takes, as keyword arguments."""
        accepted = inspect.signature(self.cls.__init__).parameters
        return {f.name: getattr(options, f.name) for f in dataclasses.fields(options) if f.name in accepted}

    def validate_options(self, options: Any) -> None:
        """ValueError naming the setting when an option is out of range."""
        check = getattr(options, "validate", None)
        if check is not None:
            check()

    @property
    def evals_per_step(self) -> int | None:
        """NFE per step (None: adaptive, the solver chooses its steps)."""
        return self.cls.evals_per_step()

    @property
    def order(self) -> float:
        return self.cls.order

    @property
    def evaluates_step_end(self) -> bool:
        """Evaluates the field at the end of each step, so at t = 1 on the last one."""
        return 1.0 in self.cls.stage_offsets

    @property
    def default_time_grid(self) -> str:
        """'late' where a learned image field hurts the solver near t = 1 (measured: docs/performance.md), else 'uniform'.

        Heun and RK4 evaluate the field at the step end, where a learned velocity is stiffest, and
        Euler-Maruyama's noise needs small steps there; on 4-16 NFE the late grid repairs both.
        """
        return "late" if (self.evaluates_step_end or self.stochastic) else "uniform"


#: every solver by the name configs and command lines use
SOLVERS: Registry[SolverInfo] = Registry("solver", "sample.solver")


def register_solver(info: SolverInfo, *, replace: bool = False) -> SolverInfo:
    """Add a solver (sample.solver = info.name); its options dataclass becomes [sample.<name>]."""
    if not (dataclasses.is_dataclass(info.options) and info.options.__dataclass_params__.frozen):
        raise TypeError(f"solver {info.name!r}: options must be a frozen dataclass (its [sample.{info.name}] section)")
    return SOLVERS.register(info.name, info, replace=replace)


for _info in (
    SolverInfo("euler", EulerSolver),
    SolverInfo("midpoint", MidpointSolver),
    SolverInfo("heun", HeunSolver),
    SolverInfo("rk4", RK4Solver),
    SolverInfo("adaptive", AdaptiveSolver, options=AdaptiveOptions),
    SolverInfo("euler_maruyama", EulerMaruyamaSolver, stochastic=True, options=EulerMaruyamaOptions),
    SolverInfo("flow_map", FlowMapSolver, flow_map=True),
    SolverInfo("consistency", ConsistencySolver, stochastic=True, flow_map=True),
):
    register_solver(_info)


def solver_info(name: str) -> SolverInfo:
    """The registry entry of a solver (an UnknownNameError, a ValueError, listing the names)."""
    return SOLVERS[name]


def make_solver(name: str, dynamics: ODE | SDE, **kwargs) -> Solver:
    """Build a solver by name (see SOLVERS): euler, midpoint, heun, rk4, adaptive, euler_maruyama, flow_map, consistency."""
    return solver_info(name).cls(dynamics, **kwargs)
