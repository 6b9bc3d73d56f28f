"""Writing files so that a reader, or a process killed at any instant, never sees a partial one."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from safetensors.torch import save_file
from torch import Tensor


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _default_mode() -> int:
    """0666 minus the umask: what open() would give, unlike mkstemp's 0600."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_replace(path: Path, write: Callable[[str], None]) -> None:
    """write(temporary path) in path's folder, fsync it, then rename it over path (and fsync the folder).

    A reader (or a run killed at any instant) sees either the old file or the complete new one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace path with data atomically."""
    atomic_replace(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_save_safetensors(path: Path, tensors: dict[str, Tensor], metadata: dict[str, str]) -> None:
    """safetensors' save_file, replacing path atomically."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_replace(path, lambda tmp: save_file(tensors, tmp, metadata=metadata))


def write_json(path: str | Path, payload: Any) -> Path:
    """Atomic, indented JSON; NaN and infinities become null (JSON has no such numbers)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(_finite(payload), indent=2) + "\n").encode())
    return path


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
