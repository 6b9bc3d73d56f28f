"""Locks between processes on files: who holds one, and a lock a builder waits for.

Every lock is an exclusive `flock` on a small file whose text says who holds it (pid, host, since). The kernel drops
it when its process ends, however it ends, so a lock of a killed process never blocks anyone. On a filesystem shared
between machines this needs one whose `flock` is seen by every client (NFSv4, Lustre and GPFS with their defaults);
docs/devices.md lists what must be shared.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO


def holder_text() -> str:
    """The lock file's text for this process: pid, host and the time it took the lock."""
    return f"pid={os.getpid()}\nhost={socket.gethostname()}\nsince={time.strftime('%Y-%m-%d %H:%M:%S')}\n"


def describe_holder(lock_file: Path) -> str:
    """'process 123 on host (since 2026-11-25 08:00:00)' from a lock file's text, as far as it says."""
    try:
        fields = dict(line.split("=", 1) for line in lock_file.read_text().splitlines() if "=" in line)
    except OSError:
        fields = {}
    pid, host, since = fields.get("pid", "?"), fields.get("host", "?"), fields.get("since", "?")
    return f"process {pid} on {host} (since {since})"


def take_lock(fh: IO[str], *, wait: bool) -> bool:
    """flock(fh) exclusively: True once held; with wait=False, False at once when another process holds it."""
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    fh.seek(0)
    fh.truncate()
    fh.write(holder_text())
    fh.flush()
    return True


def owner_is_gone(pid_text: str, host: str) -> bool:
    """Whether the process that named a temporary `host`-`pid` has ended (only decidable on its own host: a process of
    another machine counts as alive)."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OverflowError):
        return False
    return False


def lock_file_for(target: Path) -> Path | None:
    """<target's folder>/.<target's name>.lock, the folder created; None where it cannot be (a read-only place). Lock
    files are never deleted, so every process locks the same file."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return target.parent / f".{target.name}.lock"


@contextlib.contextmanager
def build_lock(lock_file: Path | None, what: str, say: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the exclusive lock on `lock_file` while building `what`; a process that finds it taken says who builds and
    waits (the builder of a cache, the others of the same job or of other jobs then read what it built). None: no lock
    (a folder that cannot hold one; each process builds for itself)."""
    try:
        fh = open(lock_file, "a+") if lock_file is not None else None  # noqa: SIM115 - closed below; closing releases it
    except OSError:  # a lock file this process may not write (a read-only shared folder)
        fh = None
    if fh is None:
        yield
        return
    with fh:
        if not take_lock(fh, wait=False):
            if say is not None:
                say(f"waiting for {describe_holder(lock_file)}, which is building {what}")
            take_lock(fh, wait=True)
        yield  # closing the file releases the lock


__all__ = ["build_lock", "describe_holder", "holder_text", "lock_file_for", "owner_is_gone", "take_lock"]
