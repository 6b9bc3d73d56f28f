"""Running a lab (docs/notebooks/NN_name.py) as `python` would, at CI size and without IPython: shared by the tests of
the solutions (test_notebooks.py) and of the student versions (test_student_notebooks.py), two files so that
pytest-xdist's --dist loadfile runs them on both cores."""

from __future__ import annotations

import contextlib
import io
import runpy
import sys
from pathlib import Path

from imgflow.core import grading

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("[0-9][0-9]_*.py"))
#: what a cell prints when it shows an object instead of its picture
REPRS = ("<PIL.", "<IPython.core.display", "<Figure size", "<matplotlib.")


def run_lab(script: Path, tmp_path: Path, monkeypatch) -> str:
    """Run a lab script as `python script` would at CI size without IPython; return what it printed."""
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGFLOW_NOTEBOOK_SIZE", "ci")
    monkeypatch.setenv("IMGFLOW_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("IMGFLOW_CACHE", str(tmp_path / "cache"))
    monkeypatch.setitem(sys.modules, "IPython", None)   # `import IPython` raises ImportError, as on a plain install
    grading.reset()
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(str(script), run_name="__main__")
    finally:
        plt.close("all")
    return printed.getvalue()
