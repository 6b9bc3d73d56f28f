"""The labs' grading core (imgflow.core.grading), their student/solution versions (imgflow.lab_versions) and their
figures (imgflow.display), called directly."""

from __future__ import annotations

import runpy

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image

from imgflow import display
from imgflow.core.grading import Case, grade, reset, results, summary
from imgflow.lab_versions import exercise_count, solution_source, student_source

X = torch.arange(1.0, 7.0).reshape(3, 2)


def test_verdicts_name_sign_factor_shape_and_known_mistakes():
    case = [Case((X,), 2 * X, mistakes={"x + x + 1": 2 * X + 1})]
    assert grade("double", lambda x: x + x, case, verbose=False).passed
    assert "wrong sign" in grade("double", lambda x: -2 * x, case, verbose=False).detail
    assert "times 0.5" in grade("double", lambda x: x, case, verbose=False).detail
    assert "looks like x + x + 1" in grade("double", lambda x: 2 * x + 1, case, verbose=False).detail
    assert "has shape (6,), expected (3, 2)" in grade("double", lambda x: (2 * x).flatten(), case, verbose=False).detail
    assert "NaN" in grade("double", lambda x: x / 0 * 0, case, verbose=False).detail
    assert "returned 2 value(s), expected 1" in grade("double", lambda x: (x, x), case, verbose=False).detail
    differs = grade("double", lambda x: 2 * x + torch.tensor([[0.0, 0.0], [0.0, 0.5], [0.0, 0.0]]), case, verbose=False)
    assert "differs by up to 0.5 (element 3" in differs.detail


def test_tolerance_is_the_stated_one_and_not_done_is_not_a_failure():
    case = [Case((X,), X)]
    assert grade("id", lambda x: x + 5e-6, case, atol=1e-5, rtol=0.0, verbose=False).passed
    assert not grade("id", lambda x: x + 5e-5, case, atol=1e-5, rtol=0.0, verbose=False).passed

    def stub(x):
        raise NotImplementedError("TODO: the identity")

    reset()
    assert grade("id", stub, case, verbose=False).status == "not done"
    assert grade("other", lambda x: x, case, verbose=False).passed
    assert [r.exercise for r in results()] == ["id", "other"]
    assert summary(verbose=False) == {"passed": 1, "failed": 0, "not done": 1}


def test_the_verdict_is_printed(capsys):
    grade("double", lambda x: -2 * x, [Case((X,), 2 * X)])
    assert capsys.readouterr().out.startswith("FAIL  double: has the wrong sign")


SCRIPT = '''# %%
def step(x):
    """doubles x"""
    y = x
    # SOLUTION: add x to itself
    y = x + x
    return y
    # END SOLUTION


RESULT = step(2)
'''


def test_student_and_solution_sources_come_from_one_script(tmp_path):
    assert exercise_count(SCRIPT) == 1
    solution = solution_source(SCRIPT)
    assert "SOLUTION" not in solution and "    y = x + x\n    return y\n" in solution
    student = student_source(SCRIPT)
    assert "x + x" not in student and "    # TODO: add x to itself\n    raise NotImplementedError('TODO: add x to itself')\n" in student
    (tmp_path / "solution.py").write_text(solution)
    (tmp_path / "student.py").write_text(student)
    assert runpy.run_path(str(tmp_path / "solution.py"))["RESULT"] == 4
    with pytest.raises(NotImplementedError, match="TODO: add x to itself"):
        runpy.run_path(str(tmp_path / "student.py"))


@pytest.mark.parametrize(("text", "message"), [
    ("    # SOLUTION\n    x = 1\n", "never closed"),
    ("    x = 1\n    # END SOLUTION\n", "without a '# SOLUTION'"),
    ("    # SOLUTION\n    # SOLUTION\n    # END SOLUTION\n", "inside the block opened on line 1"),
])
def test_unpaired_markers_are_refused_with_the_line(text, message):
    with pytest.raises(ValueError, match=message):
        student_source(text)


def test_show_saves_figures_images_samples_and_files_and_lists_them(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("IMGFLOW_NOTEBOOK_OUT", str(tmp_path))
    folder = display.start_lab("labx")
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    display.show(fig, "a line")
    image = Image.new("RGB", (8, 8), (200, 10, 10))

    class Samples:
        def grid(self):
            return image

    display.show(Samples(), "grid")
    image.save(tmp_path / "x.gif")
    display.show(tmp_path / "x.gif", "anim")
    first, second, third = display.saved()
    assert [first, second, third] == [folder / "a_line.png", folder / "grid.png", folder / "anim.gif"]
    assert all(p.stat().st_size > 0 for p in (first, second, third)) and not plt.get_fignums()
    assert display.print_saved() == [first, second, third]
    out = capsys.readouterr().out
    assert f"[figure saved: {first}]" in out and "3 figure(s) saved in" in out
    with pytest.raises(TypeError, match="cannot draw a int"):
        display.show(3, "three")
    with pytest.raises(FileNotFoundError, match="no image file"):
        display.show(tmp_path / "missing.png", "missing")
    assert not display.in_kernel()
