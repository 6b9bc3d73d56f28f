"""Every lab's student version (its solution blocks replaced by stubs raising NotImplementedError) runs to its end at
CI size, every exercise's check reporting "not done yet" and no cell printing an object's repr."""

from __future__ import annotations

import pytest

from imgflow.core import grading
from imgflow.lab_versions import exercise_count, student_source
from tests.lab_runs import NOTEBOOKS, REPRS, run_lab


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_student_version_runs_to_the_end_with_every_exercise_not_done(notebook, tmp_path, monkeypatch):
    student = tmp_path / notebook.name
    student.write_text(student_source(notebook.read_text()))
    printed = run_lab(student, tmp_path, monkeypatch)
    verdicts = grading.results()
    assert len(verdicts) >= exercise_count(notebook.read_text())
    assert all(v.status == "not done" for v in verdicts), [str(v) for v in verdicts if v.status != "not done"]
    assert not [r for r in REPRS if r in printed]
