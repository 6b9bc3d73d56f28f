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
