"""Figures that reach the student wherever a lab runs: inline in a Jupyter kernel, as files when run as a script.

`start_lab("lab1")` names the lab's output folder (`$IMGFLOW_NOTEBOOK_OUT/lab1`, default `outputs/notebooks/lab1`);
`show(obj, "name")` saves a matplotlib figure, a PIL image, a sampler's `Samples` (its grid) or a GIF file there
and, in a kernel, displays it; `print_saved()` lists every file written, which a lab run with `python` prints
at its end. Nothing here needs IPython unless a kernel is running.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

__all__ = ["in_kernel", "lab_folder", "print_saved", "saved", "show", "start_lab"]

_STATE: dict[str, Any] = {"folder": None, "saved": []}


def in_kernel() -> bool:
    """True inside a Jupyter (IPython) kernel, where figures can be displayed inline."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and hasattr(shell, "kernel")


def start_lab(name: str) -> Path:
    """Start a lab: its figures go to `$IMGFLOW_NOTEBOOK_OUT/<name>` (created); the list of saved files restarts."""
    folder = Path(os.environ.get("IMGFLOW_NOTEBOOK_OUT", "outputs/notebooks")) / name
    folder.mkdir(parents=True, exist_ok=True)
    _STATE["folder"], _STATE["saved"] = folder, []
    return folder


def lab_folder() -> Path:
    """The current lab's output folder (`start_lab` first; without it, `outputs/notebooks/lab`)."""
    return _STATE["folder"] if _STATE["folder"] is not None else start_lab("lab")


def saved() -> list[Path]:
    """The files `show` wrote since `start_lab`, in order."""
    return list(_STATE["saved"])


def _file_name(name: str, suffix: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "figure"
    return stem if stem.endswith(suffix) else stem + suffix


def show(obj: Any = None, name: str = "figure") -> None:
    """Save `obj` to the lab's folder as `<name>.png` (`.gif` for a GIF file) and display it in a kernel.

    obj: a matplotlib Figure (None: the current figure, closed afterwards), a PIL image, anything with a `grid()`
    method returning one (a sampler's Samples), or the path of an image file (a GIF stays animated). Returns None, so a
    kernel echoes nothing after the picture; `saved()[-1]` is the file written.
    """
    folder = lab_folder()
    if obj is None or type(obj).__module__.startswith("matplotlib"):
        import matplotlib.pyplot as plt

        figure = plt.gcf() if obj is None else obj
        target = folder / _file_name(name, ".png")
        figure.savefig(target, dpi=100, bbox_inches="tight")
        if in_kernel():
            from IPython.display import display

            display(figure)
        plt.close(figure)
    elif isinstance(obj, (str, Path)):
        source = Path(obj)
        if not source.is_file():
            raise FileNotFoundError(f"show: no image file at {source}; pass a figure, an image, or an existing file")
        target = folder / _file_name(name, source.suffix)
        if source.resolve() != target.resolve():
            shutil.copyfile(source, target)
        if in_kernel():
            from IPython.display import HTML, display

            data = base64.b64encode(target.read_bytes()).decode()
            kind = "gif" if target.suffix.lower() == ".gif" else "png"
            display(HTML(f'<img src="data:image/{kind};base64,{data}" alt="{target.name}">'))
    else:
        image = obj.grid() if hasattr(obj, "grid") else obj
        if not hasattr(image, "save"):
            raise TypeError(f"show: cannot draw a {type(obj).__name__}; pass a matplotlib figure, a PIL image, Samples or a file")
        target = folder / _file_name(name, ".png")
        image.save(target)
        if in_kernel():
            from IPython.display import display

            display(image)
    _STATE["saved"].append(target)
    if not in_kernel():
        print(f"[figure saved: {target}]")


def print_saved() -> list[Path]:
    """Print (and return) the files this lab saved: where to look after `python docs/notebooks/NAME.py`."""
    files = saved()
    print(f"{len(files)} figure(s) saved in {lab_folder()}:" if files else "no figures saved")
    for f in files:
        print(f"  {f}")
    return files
