"""The README's Python quick start runs as written (on small fake MNIST files) and is examples/quickstart.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from PIL import Image

from tests.image_helpers import write_idx_mnist

ROOT = Path(__file__).resolve().parent.parent


def _readme_quick_start() -> str:
    readme = (ROOT / "README.md").read_text()
    assert "## Quick start: Python" in readme, "README.md has no 'Quick start: Python' section"
    blocks = re.findall(r"```python\n(.*?)```", readme.split("## Quick start: Python", 1)[1], flags=re.S)
    assert blocks, "README.md's Python quick start has no Python block"
    return blocks[0]


def test_readme_quick_start_is_the_example_program():
    example = (ROOT / "examples" / "quickstart.py").read_text()
    code = example.split('"""', 2)[2].strip()  # the program after its docstring
    assert code == _readme_quick_start().strip()


def test_readme_quick_start_trains_loads_samples_and_saves_a_grid(tmp_path, monkeypatch):
    write_idx_mnist(tmp_path / "data", n_train=64, n_test=32)
    (tmp_path / "configs").mkdir()
    shutil.copy(ROOT / "configs" / "smoke.toml", tmp_path / "configs" / "smoke.toml")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_quick_start(), "README.md", "exec"), namespace)

    samples = namespace["samples"]
    assert samples.images.shape == (20, 1, 28, 28)
    assert samples.images.min() >= -1 and samples.images.max() <= 1
    assert torch.equal(samples.labels, torch.tensor([3, 7] * 10))
    assert samples.nfe == 10  # Euler, 10 steps, one guided evaluation per step
    assert sorted(p.name for p in (tmp_path / "runs" / "smoke").glob("ckpt-*.safetensors"))[-1] == "ckpt-00000060.safetensors"
    grid = Image.open(tmp_path / "digits.png")
    assert grid.size[0] > 28 and grid.size[1] > 28


def test_grids_put_one_class_per_column_and_stay_near_square():
    from imgflow.core.sampling_settings import SamplingSettings
    from imgflow.samples import Samples

    def nrow(labels, n):
        y = None if labels is None else torch.tensor([labels[i % len(labels)] for i in range(n)])
        return Samples(torch.zeros(n, 1, 4, 4), y, 1, 0.0, SamplingSettings()).default_nrow()

    assert nrow([3, 7], 100) == 10        # 3, 7, 3, 7, ...: every column one class, 10 x 10
    assert nrow([3, 7], 20) == 4          # 4 x 5, not 2 x 10
    assert nrow(list(range(10)), 100) == 10
    assert nrow(list(range(10)), 10) == 10  # fewer images than a square of classes: one row
    assert nrow([0, 1, 2], 90) == 9
    assert nrow(None, 50) == 8            # unconditional: about a square
