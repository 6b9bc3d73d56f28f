"""The validation runner: the quick run passes with fixed seeds and writes every report file."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

import toy.validation as validation
from toy.checks import ALL_CHECKS, CheckResult

EXPECTED_FIGURES = {
    "01_ode_convergence.png",
    "02_brownian_variance.png",
    "03_ornstein_uhlenbeck.png",
    "04_em_increment_gaussian.png",
    "05_langevin.png",
    "06_conditional_path.png",
    "07_flow_matching_samples.png",
    "07_flow_matching_field.png",
    "07_circles_to_checkerboard.png",
    "08_score_matching.png",
    "09_sde_sampling.png",
    "10_interpolant_objective.png",
    "11_flow_map.png",
    "12_distillation.png",
}


@pytest.mark.slow
def test_quick_validation_passes_and_writes_reports(tmp_path):
    results = validation.run_validation(quick=True, out_dir=tmp_path, seed=0, verbose=False)
    assert len(results) == len(ALL_CHECKS) == 12
    failed = [(m.check, m.quantity, m.value, m.tolerance_text()) for r in results for m in r.measurements if not m.passed]
    assert not failed, failed
    assert all(r.error is None and r.passed for r in results)
    figures = {f for r in results for f in r.figures}
    assert figures == EXPECTED_FIGURES
    for name in figures:
        png = (tmp_path / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["passed"] is True and report["size"] == "quick"
    n_rows = sum(len(r.measurements) for r in results)
    assert sum(len(c["measurements"]) for c in report["checks"]) == n_rows
    with open(tmp_path / "results.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_rows and {r["result"] for r in rows} == {"PASS"}
    table = (tmp_path / "results.md").read_text()
    assert table.count("| PASS ") == n_rows and "FAIL" not in table


def _fake_check(passed: bool):
    def check_fake(ctx):
        res = CheckResult("99_fake", "fake")
        res.at_most("value", 1.0 if passed else 2.0, 1.5)
        return res

    return check_fake


def _crashing_check(ctx):
    raise RuntimeError("boom")


@pytest.mark.parametrize("checks,code", [([_fake_check(True)], 0), ([_fake_check(False)], 1), ([_fake_check(True), _crashing_check], 1)])
def test_exit_code_reflects_failures(tmp_path, monkeypatch, capsys, checks, code):
    monkeypatch.setattr(validation, "ALL_CHECKS", checks)
    assert validation.main(["--out", str(tmp_path)]) == code
    out = capsys.readouterr().out
    assert ("FAIL" in out) == (code == 1)
    assert json.loads((tmp_path / "results.json").read_text())["passed"] == (code == 0)


def test_command_line_entry_points(tmp_path):
    """Both entry points run check 1 and write its report; the two interpreters run side by side (each is ~2 s of
    interpreter start and imports on one core, so on two cores this halves the test's wall time)."""
    root = Path(__file__).resolve().parents[1]
    procs = []
    for cmd in ([sys.executable, "-m", "toy"], [sys.executable, str(root / "scripts" / "validate_toy.py")]):
        out = tmp_path / cmd[-1].replace("/", "_")
        args = [*cmd, "--quick", "--checks", "1", "--out", str(out)]
        procs.append((out, subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=root)))
    try:
        outputs = [(out, *proc.communicate(timeout=300), proc.returncode) for out, proc in procs]
    finally:
        for _, proc in procs:
            proc.kill()  # a no-op for a finished process; ends the other one if one timed out
    for out, stdout, stderr, returncode in outputs:
        assert returncode == 0, stderr
        assert "01_ode_convergence" in stdout and (out / "01_ode_convergence.png").exists()
