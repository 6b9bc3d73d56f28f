"""The vocabulary of the validations: measurements, check results, run sizes and the run context."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from toy.metrics import null_distance_band, null_energy_band
from toy.plotting import save_figure

__all__ = ["FULL", "QUICK", "CheckResult", "Context", "Measurement", "Sizes", "Z"]

#: standard errors allowed for a sampling fluctuation. For a Gaussian statistic a 5-sigma
#: excursion has probability 6e-7, so even the maximum over the ~100 rows of a run fails
#: by chance with probability < 1e-4: a failing row means the claim is wrong, not bad luck.
Z = 5.0


@dataclass
class Measurement:
    """One row of the table: `value` compared with a tolerance.

    op: "<=" (value <= tolerance), ">=" (value >= tolerance) or "~" (|value - target| <= tolerance).
    """

    check: str
    quantity: str
    value: float
    op: str
    tolerance: float
    target: float | None = None

    @property
    def passed(self) -> bool:
        if not math.isfinite(self.value):
            return False
        if self.op == "<=":
            return self.value <= self.tolerance
        if self.op == ">=":
            return self.value >= self.tolerance
        if self.op == "~":
            return abs(self.value - float(self.target)) <= self.tolerance
        raise ValueError(f"unknown comparison {self.op!r}")

    def tolerance_text(self) -> str:
        if self.op == "~":
            return f"{_fmt(self.target)} ± {_fmt(self.tolerance)}"
        return f"{self.op} {_fmt(self.tolerance)}"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["passed"] = self.passed
        d["tolerance_text"] = self.tolerance_text()
        return d


def _fmt(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0 or (1e-3 <= abs(v) < 1e4):
        return f"{v:.4g}"
    return f"{v:.3e}"


@dataclass
class CheckResult:
    """The rows and figures of one check."""

    name: str
    title: str
    measurements: list[Measurement] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.measurements) and all(m.passed for m in self.measurements)

    def at_most(self, quantity: str, value: float, tolerance: float) -> Measurement:
        return self._add(quantity, value, "<=", tolerance)

    def at_least(self, quantity: str, value: float, tolerance: float) -> Measurement:
        return self._add(quantity, value, ">=", tolerance)

    def near(self, quantity: str, value: float, target: float, tolerance: float) -> Measurement:
        return self._add(quantity, value, "~", tolerance, target)

    def _add(self, quantity: str, value: float, op: str, tolerance: float, target: float | None = None) -> Measurement:
        m = Measurement(self.name, quantity, float(value), op, float(tolerance), None if target is None else float(target))
        self.measurements.append(m)
        return m


@dataclass(frozen=True)
class Sizes:
    """How big each part of a run is (QUICK for CI, FULL for the lab's figures)."""

    label: str
    # processes (checks 1-6)
    n_paths: int  # Brownian / OU paths
    n_kurtosis: int  # Euler-Maruyama increments
    n_langevin: int  # Langevin chains (also the energy-distance sample size there)
    langevin_dt: float
    n_conditional: int  # samples of the conditional ODE / SDE
    null_repeats: int  # independent target-vs-target distances for a null band
    # learned models (checks 7-10)
    hiddens: tuple[int, ...]
    activation: str
    iterations: int
    batch_size: int
    lr: float
    n_samples: int  # generated samples compared with the target
    n_field: int  # (x, t) points for field errors
    ode_steps: int
    sde_steps: int
    # the same quantities by cheaper means (quick; full keeps the implementations its tables were measured with)
    null_exact: bool = False  # null bands from the energy distance's exact null variance (toy.metrics.null_energy_band), not repeats
    fused_adam: bool = False  # torch's fused Adam kernel (same update rule)
    analytic_jvp: bool = False  # MeanFlow's du/dt pushed through the MLP by hand (MLPFlowMap), not by torch.func


#: CI size: about 25 s on 2 CPU cores (it was 3000 steps of batch 1000, n_samples 4000 and null bands from
#: repeats: ~100 s). Training dominates, at 1.1-2.1 ms per Adam step of the 4 x 64 MLP for batches of 250-1000
#: (mostly per-operation overhead on one thread), so the budget is counted in steps; the learned-model
#: tolerances were re-measured for it (checks 7-11).
#: n_samples 2000: every sample-distance tolerance is the null band at that n, which scales as 1/n.
QUICK = Sizes(
    label="quick",
    n_paths=20_000,
    n_kurtosis=200_000,
    n_langevin=4_000,
    langevin_dt=0.02,
    n_conditional=20_000,
    null_repeats=16,
    hiddens=(64, 64, 64, 64),
    activation="silu",
    iterations=1_000,
    batch_size=500,
    lr=2e-2,
    n_samples=2_000,
    n_field=20_000,
    ode_steps=100,
    sde_steps=200,
    null_exact=True,
    fused_adam=True,
    analytic_jvp=True,
)

FULL = Sizes(
    label="full",
    n_paths=200_000,
    n_kurtosis=2_000_000,
    n_langevin=10_000,
    langevin_dt=0.005,
    n_conditional=200_000,
    null_repeats=20,
    hiddens=(128, 128, 128, 128),
    activation="silu",
    iterations=20_000,
    batch_size=2_000,
    lr=1e-2,
    n_samples=10_000,
    n_field=100_000,
    ode_steps=200,
    sde_steps=500,
)


class Context:
    """What every check gets: sizes, the output folder, per-check seeding and a model cache."""

    def __init__(self, sizes: Sizes, out_dir: str | Path, seed: int = 0, progress: bool = False) -> None:
        self.sizes = sizes
        self.quick = sizes.label == "quick"
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.seed = int(seed)
        self.progress = progress
        self.cache: dict[str, Any] = {}

    def seed_for(self, name: str) -> int:
        """A stable seed for `name` derived from the run seed (independent of check order)."""
        return (self.seed * 1_000_003 + zlib.crc32(name.encode())) % (2**31)

    def reseed(self, name: str) -> int:
        """Seed the global torch RNG for `name`; returns the seed used."""
        s = self.seed_for(name)
        torch.manual_seed(s)
        return s

    def cached(self, key: str, build: Callable[[], Any]) -> Any:
        """Build once per run (e.g. a trained model shared by several checks)."""
        if key not in self.cache:
            self.cache[key] = build()
        return self.cache[key]

    def null_band(self, sample: Callable[[int], torch.Tensor], n: int, repeats: int, k: float = 4.0) -> dict[str, float]:
        """The null band (mean + k std) of the energy distance between two samples of size n of one law.

        sizes.null_exact: from the exact null variance and one sample of size n (`null_energy_band`: mean exactly
        0, std to ~1 % at n >= 1000); otherwise estimated from `repeats` pairs of samples (`null_distance_band`).
        """
        if self.sizes.null_exact:
            return null_energy_band(sample(n), n, k=k)
        return null_distance_band(sample, sample, n, repeats, k=k)

    def save(self, result: CheckResult, fig, filename: str) -> None:
        """Write a figure into the output folder and record it on the result."""
        path = save_figure(fig, self.out_dir / filename)
        result.figures.append(path.name)


def simulate_snapshots(solver, x: torch.Tensor, ts: torch.Tensor, keep: list[int]) -> list[torch.Tensor]:
    """Integrate over the grid ts with `solver`, returning the states at grid indices `keep`.

    Runs the solver segment by segment (ts[i:j+1]) so only the kept states are stored: a
    (B, T, D) trajectory of 10^5 samples and 10^3 steps would not fit comfortably in memory.
    """
    out: list[torch.Tensor] = []
    last = 0
    for j in sorted(keep):
        if j > last:
            x = solver.simulate(x, ts[last : j + 1])
            last = j
        out.append(x)
    return out
