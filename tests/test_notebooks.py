"""Every lab notebook (docs/notebooks/*.py, jupytext percent scripts) runs top to bottom at its CI size.

Each runs in this process (the imports are paid once), from a fresh namespace and an empty working
folder, with IMGFLOW_NOTEBOOK_SIZE=ci; any failing cell fails its test. The notebooks assert their own
numeric claims (a Langevin chain reaching its target, the pretrained model's digits being recognised...).
"""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "docs" / "notebooks").glob("[0-9][0-9]_*.py"))


def test_the_labs_are_all_here():
    names = [p.stem for p in NOTEBOOKS]
    assert len(names) >= 6 and names == sorted(names), names


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_at_ci_size(notebook, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMGFLOW_NOTEBOOK_SIZE", "ci")
    monkeypatch.setenv("IMGFLOW_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("IMGFLOW_CACHE", str(tmp_path / "cache"))
    try:
        runpy.run_path(str(notebook), run_name="__main__")
    finally:
        plt.close("all")


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_lab_has_an_ipynb_twin_with_the_same_cells_and_no_outputs(notebook):
    """Jupyter, VS Code and Colab open the .ipynb; the percent script is the source. Regenerate a twin with
    `jupytext --to ipynb docs/notebooks/NAME.py` after editing the script."""
    import jupytext

    twin = notebook.with_suffix(".ipynb")
    assert twin.is_file(), f"{twin.name} is missing: run jupytext --to ipynb {notebook.relative_to(notebook.parents[2])}"
    script, ipynb = jupytext.read(notebook), jupytext.read(twin)
    cells = [(c.cell_type, c.source) for c in script.cells]
    assert [(c.cell_type, c.source) for c in ipynb.cells] == cells, (
        f"{twin.name} is out of sync with {notebook.name}: run jupytext --to ipynb {notebook.relative_to(notebook.parents[2])}")
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in ipynb.cells if c.cell_type == "code")


def test_the_labs_first_cell_checks_the_installed_version_and_says_how_to_install():
    import imgflow

    assert imgflow.require_version("0.2") == imgflow.__version__ and imgflow.require_version("0.1.9") == imgflow.__version__
    with pytest.raises(ImportError, match=r"needs imgflow >= 99.0, and 0\.2\.\d+ is installed; update it from a clone"):
        imgflow.require_version("99.0")
    for notebook in NOTEBOOKS:  # the check is each lab's first code cell
        import jupytext

        first_code = next(c for c in jupytext.read(notebook).cells if c.cell_type == "code")
        assert 'imgflow.require_version("0.2")' in first_code.source and 'pip install -e ".[dev]"' in first_code.source, notebook.name
