"""How a sample is integrated: the one `SamplingSettings` that configs, model records and samplers share.

    solver (a name of SOLVERS), steps, time grid ("auto": the solver's default), guidance scale w, and the
    solver's own options (`SolverInfo.options`: the adaptive solver's tolerances, Euler-Maruyama's sde_epsilon)

As a table (a config's [sample] section and a checkpoint's record of it) the settings read

    {"solver": "adaptive", "num_steps": 50, "time_grid": "auto", "guidance_scale": 1.5, "adaptive": {"rtol": 1e-4, "atol": 1e-4}}

Tables written before issue 25 kept every solver's options at the top (sde_epsilon, rtol, atol); `from_table`
moves those the solver has into its table and drops the others, which no solver read.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from imgflow.core.solvers import SOLVERS

#: keys of the [sample] table before issue 25 that belonged to one solver: key -> that solver
LEGACY_OPTION_KEYS = {"sde_epsilon": "euler_maruyama", "rtol": "adaptive", "atol": "adaptive"}


@dataclass(frozen=True)
class SamplingSettings:
    """See the module docstring. `options` is an instance of SOLVERS[solver].options (None: its defaults)."""

    solver: str = "euler"
    steps: int = 50
    time_grid: str = "auto"
    guidance: float = 1.0
    options: Any = None

    def __post_init__(self) -> None:
        info = SOLVERS[self.solver]
        if self.options is None:
            object.__setattr__(self, "options", info.options())
        elif not isinstance(self.options, info.options):
            raise TypeError(f"options of solver {self.solver!r} must be {info.options.__name__}, got {type(self.options).__name__}")

    @property
    def nfe(self) -> int | None:
        """Model evaluations per sample (one guided evaluation counts once); None for an adaptive solver."""
        per_step = SOLVERS[self.solver].evals_per_step
        return None if per_step is None else per_step * self.steps

    def option_values(self) -> dict[str, Any]:
        return dataclasses.asdict(self.options)

    def describe(self) -> str:
        own = ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.option_values().items())
        grid = f", {self.time_grid} grid" if self.nfe is not None else ""
        nfe = f"NFE {self.nfe}" if self.nfe is not None else "adaptive NFE"
        return f"{self.solver} x{self.steps}{grid}{', ' + own if own else ''} ({nfe})"

    def validate(self) -> None:
        """ValueError naming the setting when one is out of range (the names are a config's [sample] keys)."""
        if self.steps < 1:
            raise ValueError(f"sample.num_steps must be >= 1, got {self.steps}")
        if not math.isfinite(self.guidance):
            raise ValueError(f"sample.guidance_scale must be a finite number, got {self.guidance}")
        try:
            SOLVERS[self.solver].validate_options(self.options)
        except ValueError as exc:
            raise ValueError(f"[sample.{self.solver}] {exc}") from None

    def to_table(self) -> dict[str, Any]:
        """The settings as a [sample] table (see the module docstring); a solver without options has no sub-table."""
        table: dict[str, Any] = {"solver": self.solver, "num_steps": self.steps, "time_grid": self.time_grid, "guidance_scale": self.guidance}
        if self.option_values():
            table[self.solver] = self.option_values()
        return table

    @staticmethod
    def options_of(solver: str, **values: Any) -> dict[str, Any]:
        """The subset of `values` that are settings of `solver` (a sweep hands every solver the same candidates)."""
        known = SOLVERS[solver].option_names
        return {k: v for k, v in values.items() if k in known}

    @classmethod
    def from_table(cls, table: dict[str, Any], default: SamplingSettings | None = None) -> SamplingSettings:
        """Settings from a [sample] table (this layout or the one before issue 25); missing keys come from `default`."""
        base = default or cls()
        solver = table.get("solver", base.solver)
        info = SOLVERS[solver]
        values = dataclasses.asdict(base.options) if solver == base.solver else {}
        values.update({k: v for k, v in table.items() if LEGACY_OPTION_KEYS.get(k) == solver})
        values.update(table.get(solver) or {})
        options = info.options(**{k: v for k, v in values.items() if k in info.option_names})
        return cls(solver, int(table.get("num_steps", base.steps)), table.get("time_grid", base.time_grid),
                   float(table.get("guidance_scale", base.guidance)), options)


__all__ = ["LEGACY_OPTION_KEYS", "SamplingSettings"]
