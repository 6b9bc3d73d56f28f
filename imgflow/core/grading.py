"""Self-grading for the labs' exercises: run a student's function on fixed inputs and say how it differs.

A grader (`toy.exercises.check_euler_step`, `imgflow.exercises.check_patchify`, ...) builds a few fixed cases
and calls `grade`: the student's answer is compared with the reference output on each case within a stated
tolerance, and the verdict names what differs: the shape, the sign, a constant factor, or one of the grader's
known mistakes ("uses h where the noise needs sqrt(h)"). A function that still raises NotImplementedError (the
student notebook's stub) is "not done yet", never a failure, so a student notebook runs to its end.

Every verdict is printed and kept in the lab's gradebook; `summary()` prints the count at the end of a lab.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["Case", "CheckResult", "grade", "loss_value", "reset", "results", "scalar_loss", "seeded_module", "summary"]

Status = Literal["passed", "failed", "not done"]


@dataclass(frozen=True)
class Case:
    """One fixed input: the arguments for the student's function, the reference output, and the wrong answers'
    outputs on the same arguments ({"what the mistake is": output}) that the verdict can name. `start` is what the
    output is an update of (x for a step x -> x + ...): a wrong sign or factor is then also looked for in the update."""

    args: tuple[Any, ...]
    expected: Any
    mistakes: dict[str, Any] = field(default_factory=dict)
    kwargs: dict[str, Any] = field(default_factory=dict)
    start: Tensor | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict on one exercise: `status` is "passed", "failed" or "not done"; `detail` says why."""

    exercise: str
    status: Status
    detail: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = {"passed": "PASS", "failed": "FAIL", "not done": "TODO"}[self.status]
        return f"{mark}  {self.exercise}: {self.detail}"


_RESULTS: dict[str, CheckResult] = {}


def seeded_module(build: Callable[[], torch.nn.Module], seed: int, scale: float = 1.0) -> torch.nn.Module:
    """A grader's fixed network: build() under torch.manual_seed(seed) (the global RNG left as it was), every weight
    multiplied by `scale` (> 1 makes the output depend visibly on every input, so each wrong term shows), in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build()
    if scale != 1.0:
        with torch.no_grad():
            for p in module.parameters():
                p.mul_(scale)
    return module.eval()


def reset() -> None:
    """Forget every verdict so far (a lab starts a fresh gradebook)."""
    _RESULTS.clear()


def results() -> list[CheckResult]:
    """The latest verdict of every exercise graded since the last `reset`, in the order first graded."""
    return list(_RESULTS.values())


def summary(verbose: bool = True) -> dict[Status, int]:
    """Count (and print) the exercises passed, failed and not done yet."""
    counts: dict[Status, int] = {"passed": 0, "failed": 0, "not done": 0}
    for r in _RESULTS.values():
        counts[r.status] += 1
    if verbose:
        print(f"exercises: {counts['passed']} passed, {counts['failed']} failed, {counts['not done']} not done yet "
              f"(of {len(_RESULTS)})")
        for r in _RESULTS.values():
            if not r.passed:
                print(f"  {r}")
    return counts


def scalar_loss(loss: Any, no_gradient_hint: str = "") -> Tensor:
    """A student's loss, checked to be one number that carries a gradient (ValueError saying what is wrong: a float
    from .item(), a per-sample vector, a detached value); returned as is, shape ()."""
    if not isinstance(loss, Tensor):
        raise ValueError(f"the loss must be a tensor (that carries the gradient), got a {type(loss).__name__}: no .item()")
    if loss.numel() != 1:
        raise ValueError(f"the loss must be one number (a tensor of shape ()), got {tuple(loss.shape)}: average over the batch")
    if not loss.requires_grad:
        raise ValueError("the loss carries no gradient to the network (no .item(), .detach() or torch.no_grad() on the model's "
                         f"output){no_gradient_hint}")
    return loss.reshape(())


def loss_value(loss_fn: Callable[..., Any]) -> Callable[..., Tensor]:
    """loss_fn wrapped for `grade`: its `scalar_loss`, detached (a wrong kind of loss becomes a failing verdict)."""
    return lambda *args: scalar_loss(loss_fn(*args)).detach()


def _as_tuple(value: Any) -> tuple[Any, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def _close(a: Tensor, b: Tensor, atol: float, rtol: float) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.double(), b.double(), atol=atol, rtol=rtol))


def _describe(got: Tensor, want: Tensor, case: Case, index: int, part: str, atol: float, rtol: float) -> str:
    """Why `got` is not `want`: a known mistake, a sign, a constant factor, or the largest difference."""
    for name, wrong in case.mistakes.items():
        wrong_part = _as_tuple(wrong)[index] if len(_as_tuple(wrong)) > index else None
        if isinstance(wrong_part, Tensor) and _close(got, wrong_part.detach(), atol, rtol):
            return f"{part}looks like {name}"
    g, w = got.double().flatten(), want.double().flatten()
    pairs = [(g, w, part)]
    if case.start is not None and case.start.shape == want.shape:
        b = case.start.double().flatten()
        pairs.append((g - b, w - b, f"{part}the update (the result minus the start) "))
    for a, e, what in pairs:
        if torch.allclose(a, -e, atol=atol, rtol=rtol) and e.abs().max() > atol:
            return f"{what}has the wrong sign (it is minus the expected value)"
        if e.norm() > 0 and e.numel() > 1:   # one number is always some multiple of another
            factor = float(a @ e / (e @ e))
            if abs(factor) > 1e-12 and torch.allclose(a, factor * e, atol=atol, rtol=max(rtol, 1e-3)):
                return f"{what}is the expected value times {factor:.4g}: a factor is missing or extra"
    if w.numel() == 1:
        ratio = f" (ratio {float(g[0] / w[0]):.4g})" if float(w[0]) != 0 else ""
        return f"{part}is {float(g[0]):.6g}, expected {float(w[0]):.6g}{ratio}; tolerance atol={atol:g}, rtol={rtol:g}"
    gap = (g - w).abs()
    k = int(gap.argmax())
    return (f"{part}differs by up to {float(gap[k]):.3g} (element {k}: {float(g[k]):.4g}, expected {float(w[k]):.4g}); "
            f"tolerance atol={atol:g}, rtol={rtol:g}")


def grade(exercise: str, fn: Callable[..., Any], cases: Sequence[Case], *, atol: float = 1e-5, rtol: float = 1e-4,
          names: Sequence[str] | None = None, verbose: bool = True) -> CheckResult:
    """Run `fn(*case.args, **case.kwargs)` on every case and compare with `case.expected` (a tensor or a tuple of
    tensors, `names` naming the parts) within |got - expected| <= atol + rtol |expected|. The first difference
    found is the verdict; NotImplementedError means "not done yet". The verdict is printed and kept."""
    result = _grade(exercise, fn, cases, atol=atol, rtol=rtol, names=names)
    _RESULTS[exercise] = result
    if verbose:
        print(result)
    return result


def _grade(exercise: str, fn: Callable[..., Any], cases: Sequence[Case], *, atol: float, rtol: float,
           names: Sequence[str] | None) -> CheckResult:
    for n, case in enumerate(cases, start=1):
        where = f"on input {n} of {len(cases)}, " if len(cases) > 1 else ""
        try:
            got = fn(*case.args, **case.kwargs)
        except NotImplementedError:
            return CheckResult(exercise, "not done", "not done yet (the function still raises NotImplementedError)")
        except Exception as error:  # a student's bug is a verdict, not a crash of the notebook
            return CheckResult(exercise, "failed", f"{where}it raised {type(error).__name__}: {error}")
        wants, gots = _as_tuple(case.expected), _as_tuple(got)
        if len(gots) != len(wants):
            return CheckResult(exercise, "failed", f"{where}it returned {len(gots)} value(s), expected {len(wants)}")
        for i, (g, w) in enumerate(zip(gots, wants)):
            part = f"{names[i]} " if names else ("" if len(wants) == 1 else f"value {i + 1} ")
            if not isinstance(w, Tensor):
                if g != w:
                    return CheckResult(exercise, "failed", f"{where}{part}is {g!r}, expected {w!r}")
                continue
            if not isinstance(g, Tensor):
                try:
                    g = torch.as_tensor(g, dtype=w.dtype)
                except (TypeError, ValueError, RuntimeError):
                    return CheckResult(exercise, "failed", f"{where}{part}is a {type(g).__name__}, expected a tensor")
            g, w = g.detach(), w.detach()
            if g.shape != w.shape:
                hint = " (as many numbers: check the order of the dimensions)" if g.numel() == w.numel() else ""
                return CheckResult(exercise, "failed", f"{where}{part}has shape {tuple(g.shape)}, expected {tuple(w.shape)}{hint}")
            if not torch.isfinite(g).all():
                return CheckResult(exercise, "failed", f"{where}{part}has NaN or infinite values")
            if not _close(g, w, atol, rtol):
                return CheckResult(exercise, "failed", where + _describe(g, w, case, i, part, atol, rtol))
    inputs = f"{len(cases)} fixed input{'s' if len(cases) > 1 else ''}"
    return CheckResult(exercise, "passed", f"matches the reference on {inputs} (atol={atol:g}, rtol={rtol:g})")

