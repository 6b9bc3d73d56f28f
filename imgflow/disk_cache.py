"""The one protocol of the project's on-disk caches (converted image folders, encoded latents).

A cache is a folder `<root>/<name>` holding one data file and `meta.json`. It is used only when its meta names
this `format` and `key` (a digest of everything that decides its contents) and the data file has exactly the
size the meta implies; anything else (truncated, foreign, of an older format) is rebuilt, never trusted. A build
writes into `<name>.tmp-<host>-<pid>` beside it and renames that onto `<name>` in one `os.replace`, so a killed build
never leaves a folder that looks complete.

Processes that want the same cache at once (the processes of one job, runs started together, machines sharing the
filesystem) take turns on `.<name>.lock` (imgflow.file_locks.build_lock): one builds, the others wait, find the finished
cache valid and read it. A temporary is removed as stale only when its owner is gone, and a valid cache is never
replaced, so no build deletes what another process writes or reads.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgflow.file_locks import build_lock, lock_file_for, owner_is_gone


def cache_root() -> Path:
    """The imgflow cache: $IMGFLOW_CACHE, else $XDG_CACHE_HOME/imgflow, else ~/.cache/imgflow (folders/, latents/, fid/ inside)."""
    base = os.environ.get("IMGFLOW_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache", "imgflow")
    return Path(base)


@dataclass
class CacheFolder:
    """A valid cache: its folder and its meta."""

    dir: Path
    meta: dict[str, Any]


@dataclass(frozen=True)
class CacheFormat:
    """How caches of one kind look: the format tag in their meta, the data file's name and its size from the meta."""

    tag: str
    data_file: str
    data_bytes: Callable[[dict[str, Any]], int]


def valid_cache(folder: Path, fmt: CacheFormat, key: str) -> CacheFolder | None:
    """The cache in `folder` if it is complete and of this format and key; None otherwise."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        if meta.get("format") != fmt.tag or meta.get("key") != key:
            return None
        if (folder / fmt.data_file).stat().st_size != fmt.data_bytes(meta):
            return None
        return CacheFolder(folder, meta)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def build_cache(final: Path, fmt: CacheFormat, key: str, write: Callable[[Path], dict[str, Any]], *,
                unwritable: Callable[[OSError], Exception], short: Callable[[Path], Exception]) -> CacheFolder:
    """Build the cache `final` atomically under its lock: `write(tmp)` writes the data file into the temporary folder and
    returns the meta (format and key are added). unwritable(OSError) / short(tmp): the errors for a root that cannot be
    created and for a data file that came out shorter than its meta says (a full disk)."""
    _make_root(final, unwritable)
    with build_lock(lock_file_for(final), f"the cache {final}"):
        return _build(final, fmt, key, write, short)


def _make_root(final: Path, unwritable: Callable[[OSError], Exception]) -> None:
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise unwritable(exc) from None


def _remove_stale_temporaries(final: Path) -> None:
    """Temporaries of builds whose process has ended (`<name>.tmp-<host>-<pid>`; `<name>.tmp-<pid>` of older versions
    counts as this host's)."""
    for stale in final.parent.glob(f"{final.name}.tmp-*"):
        owner = stale.name[len(final.name) + len(".tmp-"):]
        host, _, pid = owner.rpartition("-")
        if owner_is_gone(pid, host or socket.gethostname()):
            shutil.rmtree(stale, ignore_errors=True)


def _build(final: Path, fmt: CacheFormat, key: str, write: Callable[[Path], dict[str, Any]],
           short: Callable[[Path], Exception]) -> CacheFolder:
    _remove_stale_temporaries(final)
    tmp = final.parent / f"{final.name}.tmp-{socket.gethostname()}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)  # this process's own, from a build it abandoned
    tmp.mkdir()
    try:
        meta = {**write(tmp), "format": fmt.tag, "key": key}
        if (tmp / fmt.data_file).stat().st_size != fmt.data_bytes(meta):
            raise short(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta))
        if final.exists():  # invalid (checked under the lock): incomplete, foreign or of an older format
            shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return CacheFolder(final, meta)


def cached(final: Path, fmt: CacheFormat, key: str, write: Callable[[Path], dict[str, Any]], *, what: str,
           unwritable: Callable[[OSError], Exception], short: Callable[[Path], Exception],
           log: Callable[[str], None] | None = None) -> tuple[CacheFolder, bool]:
    """(the valid cache at `final`, reused) or (a fresh build, not reused), saying so when an invalid one is replaced.

    Another process building the same cache is waited for (said through `log`), and its result reused."""
    found = valid_cache(final, fmt, key)
    if found is not None:
        return found, True
    _make_root(final, unwritable)
    with build_lock(lock_file_for(final), f"the {what} {final}", say=log):
        found = valid_cache(final, fmt, key)  # built by the process this one waited for
        if found is not None:
            return found, True
        if final.exists() and log is not None:
            log(f"note: the {what} {final} is incomplete or from another version; rebuilding it")
        return _build(final, fmt, key, write, short), False


__all__ = ["CacheFolder", "CacheFormat", "build_cache", "cache_root", "cached", "valid_cache"]
