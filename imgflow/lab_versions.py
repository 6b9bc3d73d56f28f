"""A lab's student and solution notebooks, both generated from its one percent script (docs/notebooks/NN_name.py).

In the script, an exercise's answer sits between two marker comments inside the function the student writes:

    def euler_step(u, x, t, h):
        # SOLUTION: x moves by h times the velocity at (x, t)
        return x + h * u(x, t)
        # END SOLUTION

The solution notebook drops the two markers; the student notebook replaces the block with a stub that raises
NotImplementedError carrying the hint, which the lab's graders report as "not done yet". The script itself runs
as the solution (the markers are comments). `write_lab_notebooks` writes both `.ipynb` files and
`lab_notebooks_out_of_sync` says which are stale (the test suite and `scripts/make_lab_notebooks.py --check`).
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["STUDENT_FOLDER", "exercise_count", "lab_notebooks_out_of_sync", "solution_source", "student_notebook_path",
           "student_source", "write_lab_notebooks"]

#: the student notebooks' folder, beside the solutions (docs/notebooks/student/NN_name.ipynb)
STUDENT_FOLDER = "student"

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)# SOLUTION(?::[ \t]*(?P<hint>.*?))?[ \t]*$")
_END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")


def _blocks(text: str) -> list[tuple[int, int, str, str]]:
    """(first line, last line, indent, hint) of every solution block; a marker without its pair is an error."""
    lines, blocks, open_at = text.splitlines(), [], None
    for n, line in enumerate(lines):
        if (m := _BEGIN.match(line)) is not None:
            if open_at is not None:
                raise ValueError(f"line {n + 1}: '# SOLUTION' inside the block opened on line {open_at[0] + 1}; close it with '# END SOLUTION'")
            open_at = (n, m.group("indent"), m.group("hint") or "")
        elif _END.match(line):
            if open_at is None:
                raise ValueError(f"line {n + 1}: '# END SOLUTION' without a '# SOLUTION' line above it")
            blocks.append((open_at[0], n, open_at[1], open_at[2]))
            open_at = None
    if open_at is not None:
        raise ValueError(f"line {open_at[0] + 1}: '# SOLUTION' is never closed; add '# END SOLUTION' after the answer")
    return blocks


def exercise_count(text: str) -> int:
    """How many solution blocks a lab script has."""
    return len(_blocks(text))


def _rewrite(text: str, student: bool) -> str:
    lines = text.splitlines()
    out: list[str] = []
    previous = 0
    for first, last, indent, hint in _blocks(text):
        out += lines[previous:first]
        if student:
            message = f"TODO: {hint}" if hint else "TODO: write this exercise"
            out += [f"{indent}# {message}", f"{indent}raise NotImplementedError({message!r})"]
        else:
            out += lines[first + 1:last]
        previous = last + 1
    out += lines[previous:]
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


def solution_source(text: str) -> str:
    """The script with its solution markers removed: the solution notebook's source."""
    return _rewrite(text, student=False)


def student_source(text: str) -> str:
    """The script with each solution block replaced by `raise NotImplementedError("TODO: <hint>")`."""
    return _rewrite(text, student=True)


def student_notebook_path(script: Path) -> Path:
    """docs/notebooks/NN_name.py -> docs/notebooks/student/NN_name.ipynb."""
    return script.parent / STUDENT_FOLDER / script.with_suffix(".ipynb").name


def _notebook(source: str):
    import jupytext

    return jupytext.reads(source, fmt="py:percent")


def _cells(notebook) -> list[tuple[str, str]]:
    return [(c.cell_type, c.source) for c in notebook.cells]


def _expected(script: Path) -> dict[Path, str]:
    text = Path(script).read_text(encoding="utf-8")
    return {Path(script).with_suffix(".ipynb"): solution_source(text), student_notebook_path(Path(script)): student_source(text)}


def write_lab_notebooks(script: Path) -> list[Path]:
    """Write the solution (NN_name.ipynb beside the script) and student (student/NN_name.ipynb) notebooks, without outputs."""
    import jupytext

    written = []
    for target, source in _expected(Path(script)).items():
        target.parent.mkdir(parents=True, exist_ok=True)
        jupytext.write(_notebook(source), target, fmt="ipynb")
        written.append(target)
    return written


def lab_notebooks_out_of_sync(script: Path) -> list[Path]:
    """The generated notebooks of `script` that are missing, carry outputs, or whose cells differ from the script's."""
    import jupytext

    stale = []
    for target, source in _expected(Path(script)).items():
        if not target.is_file():
            stale.append(target)
            continue
        written = jupytext.read(target)
        has_outputs = any(c.get("outputs") or c.get("execution_count") is not None for c in written.cells if c.cell_type == "code")
        if has_outputs or _cells(written) != _cells(_notebook(source)):
            stale.append(target)
    return stale
