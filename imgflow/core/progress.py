"""Progress bars that appear only where a person watches: `progress_bar(iterable, enabled=...)`.

Every tqdm bar of imgflow and toy is made here. A bar shows when its caller enables it and its
stream (stderr unless `file=` says otherwise) is a terminal or a notebook draws it; a log file
or a pipe gets no bar unless the caller passes `force=True`. Inside `no_progress_bars()` (what a
command line's `--no-progress` turns on) nothing shows, forced or not.

It lives in `imgflow.core`, the bottom layer, so the solvers here and the 2-D lab can use it.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from typing import IO, Any

from tqdm.auto import tqdm
from tqdm.notebook import tqdm as notebook_tqdm  # not tqdm.autonotebook: importing it prints a TqdmExperimentalWarning

#: False inside no_progress_bars(): every bar is disabled
_BARS_ALLOWED: ContextVar[bool] = ContextVar("imgflow_progress_bars_allowed", default=True)


def watched(stream: IO[str] | None = None) -> bool:
    """Whether a person sees what goes to `stream` (default stderr): a terminal, or a notebook's widgets."""
    if issubclass(tqdm, notebook_tqdm):  # tqdm.auto found a notebook front end: it draws widgets, not text
        return True
    stream = sys.stderr if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def bars_allowed() -> bool:
    """False inside no_progress_bars()."""
    return _BARS_ALLOWED.get()


def silence_progress_bars() -> None:
    """No bar shows from now on in this context (a command's --no-progress; `imgflow.cli.run` scopes it to one command)."""
    _BARS_ALLOWED.set(False)


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """No bar shows inside the block, whatever its caller enabled or forced."""
    token = _BARS_ALLOWED.set(False)
    try:
        yield
    finally:
        _BARS_ALLOWED.reset(token)


def progress_bar(iterable: Iterable[Any] | None = None, *, enabled: bool, force: bool = False, file: IO[str] | None = None,
                 **tqdm_kwargs: Any) -> tqdm:
    """A tqdm bar (tqdm.auto) over `iterable`, disabled unless enabled and (its stream is watched or force).

    `file` is the bar's stream (default stderr), the one checked for a terminal; other keywords go to tqdm.
    A disabled bar still iterates, counts and accepts update/set_postfix/close, but prints nothing.
    """
    show = enabled and bars_allowed() and (force or watched(file))
    if file is not None:
        tqdm_kwargs["file"] = file
    return tqdm(iterable, disable=not show, **tqdm_kwargs)
