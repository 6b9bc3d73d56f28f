"""In a Jupyter kernel, imgflow.display shows each figure, image and GIF inline (as well as saving it), and show()
leaves nothing for the kernel to echo: one small notebook executed by nbclient, as Jupyter and the docs build run a lab."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient

CELL = '''
import matplotlib.pyplot as plt
from PIL import Image
from imgflow.display import show, start_lab
folder = start_lab("kernel")
fig, ax = plt.subplots()
ax.plot([0, 1], [1, 0])
show(fig, "line")
Image.new("RGB", (8, 8), (10, 200, 10)).save(folder / "src.gif")
show(Image.new("RGB", (8, 8), (200, 10, 10)), "image")
show(folder / "src.gif", "anim")
'''


def test_a_kernel_shows_figures_images_and_gifs_inline_and_echoes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGFLOW_NOTEBOOK_OUT", str(tmp_path))
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    NotebookClient(notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = notebook.cells[0].outputs
    kinds = [o.output_type for o in outputs]
    assert "execute_result" not in kinds and "error" not in kinds, outputs
    shown = [o.data for o in outputs if o.output_type == "display_data"]
    assert len(shown) == 3
    assert "image/png" in shown[0] and "image/png" in shown[1]
    assert '<img src="data:image/gif;base64,' in shown[2]["text/html"]
    assert not [o for o in outputs if o.output_type == "stream" and "[figure saved" in o.text]   # the script-only line
    assert sorted(p.name for p in (tmp_path / "kernel").iterdir()) == ["anim.gif", "image.png", "line.png", "src.gif"]
