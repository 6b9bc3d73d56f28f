"""Caches shared by processes that start together: one builds, the others wait and read; nothing live is deleted.

The races are forced, not hoped for: the first builder is held inside its build (its own log line is the hook) until
the second one has said that it waits. Threads suffice for that, since `flock` locks of two open() calls exclude each
other within one process as between processes; the crash and the independent runs use real processes.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from imgflow.data import folder as folder_module
from imgflow.data import load_dataset
from imgflow.disk_cache import CacheFormat, cached
from tests.test_folder_data import cache_folders, folder_cfg, write_pets

REPO = Path(__file__).resolve().parents[1]


def race(first, second, build_line: str, timeout: float = 60.0):
    """Run first(log) and second(log) in threads, the first held at its `build_line` message until the second waits.
    Returns (results, messages of the first, messages of the second)."""
    started, waiting, go = threading.Event(), threading.Event(), threading.Event()
    said: tuple[list[str], list[str]] = ([], [])
    results: list = [None, None]
    errors: list[BaseException] = []

    def log_first(message: str) -> None:
        said[0].append(message)
        if message.startswith(build_line):
            started.set()
            assert go.wait(timeout), "the second builder never said that it waits"

    def log_second(message: str) -> None:
        said[1].append(message)
        if message.startswith("waiting for"):
            waiting.set()

    def run(i, fn, log):
        try:
            results[i] = fn(log)
        except BaseException as exc:  # re-raised in the test's thread
            errors.append(exc)
            started.set()
            go.set()

    a = threading.Thread(target=run, args=(0, first, log_first))
    a.start()
    assert started.wait(timeout)
    b = threading.Thread(target=run, args=(1, second, log_second))
    b.start()
    waiting.wait(timeout)
    go.set()
    a.join(timeout)
    b.join(timeout)
    if errors:
        raise errors[0]
    return results, said[0], said[1]


def test_two_loads_of_one_new_folder_build_its_cache_once_and_read_the_same_images(tmp_path, monkeypatch):
    pets = write_pets(tmp_path / "pets")
    cfg = folder_cfg(tmp_path, pets)
    convert = folder_module._converted
    builds: list[str] = []
    hold: dict = {}

    def converted(*args, **kwargs):  # each conversion of the folder (a build) says so in the first loader's log
        builds.append(threading.current_thread().name)
        hold["log"]("converting")
        yield from convert(*args, **kwargs)

    monkeypatch.setattr(folder_module, "_converted", converted)

    def first(log):
        hold["log"] = log
        return load_dataset(cfg.data, log=log)

    (a, b), _, said_b = race(first, lambda log: load_dataset(cfg.data, log=log), "converting")
    assert len(builds) == 1  # built once, by the first; the second waited for it, then read it
    assert any(m.startswith(f"waiting for process {os.getpid()} on {socket.gethostname()}") for m in said_b)
    assert torch.equal(a.images, b.images) and a.info["cache"] == b.info["cache"]
    assert len(cache_folders(tmp_path / "cache")) == 1


FORMAT = CacheFormat("test-cache-1", "data.bin", lambda meta: meta["n"])


def write_bytes(n: int):
    def write(tmp: Path) -> dict:
        (tmp / "data.bin").write_bytes(b"x" * n)
        return {"n": n}
    return write


def errors():
    return {"unwritable": lambda exc: RuntimeError(str(exc)), "short": lambda tmp: RuntimeError(f"short {tmp}")}


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_temporary_is_removed_only_when_its_owner_is_gone(tmp_path):
    final = tmp_path / "thing-0123"
    host = socket.gethostname()
    live_owner = tmp_path / f"thing-0123.tmp-{host}-{os.getppid()}"  # the test runner's parent: alive
    dead_owner = tmp_path / f"thing-0123.tmp-{host}-{dead_pid()}"
    other_host = tmp_path / "thing-0123.tmp-some-other-machine-1"
    old_style_dead = tmp_path / f"thing-0123.tmp-{dead_pid()}"  # named by earlier versions: pid only
    for folder in (live_owner, dead_owner, other_host, old_style_dead):
        folder.mkdir()
        (folder / "data.bin").write_bytes(b"partial")
    _, reused = cached(final, FORMAT, "k", write_bytes(5), what="test cache", **errors())
    assert not reused and (final / "data.bin").read_bytes() == b"xxxxx"
    assert live_owner.is_dir() and other_host.is_dir()  # another process may still be writing them
    assert not dead_owner.exists() and not old_style_dead.exists()


def test_a_valid_cache_is_read_and_never_replaced(tmp_path):
    final = tmp_path / "thing-0123"
    cached(final, FORMAT, "k", write_bytes(5), what="test cache", **errors())
    inode = (final / "data.bin").stat().st_ino
    calls = []
    _, reused = cached(final, FORMAT, "k", lambda tmp: calls.append(tmp) or {"n": 0}, what="test cache", **errors())
    assert reused and calls == [] and (final / "data.bin").stat().st_ino == inode  # the file a reader maps is the same file


CRASHING_BUILD = """
import sys, time
from pathlib import Path
from imgflow.disk_cache import CacheFormat, cached

def write(tmp):
    (tmp / "data.bin").write_bytes(b"half")
    Path(sys.argv[2]).write_text("inside the build")
    time.sleep(120)

cached(Path(sys.argv[1]), CacheFormat("test-cache-1", "data.bin", lambda m: m["n"]), "k", write, what="test cache",
       unwritable=RuntimeError, short=RuntimeError)
"""


def test_a_build_killed_halfway_leaves_no_cache_and_the_next_one_rebuilds_it(tmp_path):
    final, inside = tmp_path / "thing-0123", tmp_path / "inside"
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_BUILD, str(final), str(inside)])
    deadline = time.monotonic() + 60
    while not inside.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert inside.exists(), "the build never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not final.exists()  # only its temporary, never a folder that looks finished
    assert [p.name for p in tmp_path.glob("thing-0123.tmp-*")] == [f"thing-0123.tmp-{socket.gethostname()}-{proc.pid}"]
    _, reused = cached(final, FORMAT, "k", write_bytes(3), what="test cache", **errors())  # its lock died with it
    assert not reused and (final / "data.bin").read_bytes() == b"xxx" and not list(tmp_path.glob("thing-0123.tmp-*"))


def test_two_independent_training_runs_started_together_on_a_new_folder_both_finish(tmp_path):
    """The reported failure: each build deleted the other's live temporary (FileNotFoundError on images.u8)."""
    pets = write_pets(tmp_path / "pets")
    args = ["--data.dataset", "folder", "--data.folder.path", str(pets), "--data.image_size", "8", "--data.folder.cache_dir",
            str(tmp_path / "cache"), "--model.unet.base_channels", "8", "--model.unet.channel_mults", "[1, 2]",
            "--model.unet.attention_resolutions", "[4]", "--model.unet.num_heads", "2", "--train.steps", "2", "--train.batch_size",
            "4", "--train.sample_every", "0", "--train.checkpoint_every", "2", "--threads", "1", "--no-progress"]
    procs = [subprocess.Popen([sys.executable, str(REPO / "scripts/train_images.py"), *args, "--run.output_dir", str(tmp_path / f"run{i}")],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    assert len(cache_folders(tmp_path / "cache")) == 1 and not list((tmp_path / "cache").glob("*.tmp-*"))
