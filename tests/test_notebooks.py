"""Every lab (docs/notebooks/NN_name.py, a jupytext percent script) runs top to bottom at its CI size as its solution
(test_student_notebooks.py runs the student versions), and its two .ipynb notebooks are the script's.

Each runs in this process (the imports are paid once), from a fresh namespace and an empty working folder, with
IMGFLOW_NOTEBOOK_SIZE=ci and IPython unimportable (a plain install has none); any failing cell fails its test. The
labs assert their own numeric claims; here the solution must pass every exercise's grader, the student version
(stubs left in) must reach its end with every exercise "not done yet", and neither may print an object's repr in
place of its picture.
"""

from __future__ import annotations

import pytest

from imgflow.core import grading
from imgflow.lab_versions import exercise_count, lab_notebooks_out_of_sync
from tests.lab_runs import NOTEBOOKS, REPRS, run_lab


def test_the_labs_are_all_here():
    names = [p.stem for p in NOTEBOOKS]
    assert len(names) >= 6 and names == sorted(names), names


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_solution_runs_at_ci_size_passes_its_exercises_and_saves_its_figures(notebook, tmp_path, monkeypatch):
    printed = run_lab(notebook, tmp_path, monkeypatch)
    verdicts = grading.results()
    assert len(verdicts) >= exercise_count(notebook.read_text()), "every exercise block needs a check cell"
    assert all(v.passed for v in verdicts), [str(v) for v in verdicts if not v.passed]
    assert not [r for r in REPRS if r in printed], printed[-2000:]
    figures = sorted((tmp_path / "out").rglob("*.png")) + sorted((tmp_path / "out").rglob("*.gif"))
    assert figures and all(f.stat().st_size > 1000 for f in figures)
    assert all(str(f) in printed for f in figures if f.parent.name.startswith("lab")), "the run lists every figure it saved"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_the_solution_and_student_notebooks_are_the_scripts(notebook):
    """Jupyter, VS Code and Colab open the .ipynb; the percent script is the source. After editing a script, run
    `python scripts/make_lab_notebooks.py`."""
    assert lab_notebooks_out_of_sync(notebook) == [], "run python scripts/make_lab_notebooks.py"


def test_the_labs_first_cell_checks_the_installed_version_and_says_how_to_install():
    import imgflow

    assert imgflow.require_version("0.2") == imgflow.__version__ and imgflow.require_version("0.1.9") == imgflow.__version__
    with pytest.raises(ImportError, match=r"needs imgflow >= 99.0, and 0\.2\.\d+ is installed; update it from a clone"):
        imgflow.require_version("99.0")
    for notebook in NOTEBOOKS:  # the check is each lab's first code cell
        import jupytext

        first_code = next(c for c in jupytext.read(notebook).cells if c.cell_type == "code")
        assert 'imgflow.require_version("0.2")' in first_code.source and 'pip install -e ".[notebooks]"' in first_code.source, notebook.name
