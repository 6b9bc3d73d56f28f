"""Progress bars appear only where a person watches: on a terminal, and never after --no-progress."""

import io
import sys

import pytest
import torch

from imgflow.cli import run
from imgflow.cli.train import main as train_main
from imgflow.core import LearnedVectorFieldODE, make_solver, uniform_time_grid
from imgflow.core import progress as progress_module
from imgflow.core.progress import bars_allowed, no_progress_bars, progress_bar
from imgflow.data import export_image_folder
from tests.image_helpers import blob_images


class Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_a_bar_shows_on_a_terminal_and_is_silent_on_a_file_or_pipe_unless_forced():
    tty, log = Terminal(), io.StringIO()
    assert list(progress_bar(range(3), enabled=True, file=tty, desc="tty")) == [0, 1, 2]
    assert "tty" in tty.getvalue()
    bar = progress_bar(range(3), enabled=True, file=log, desc="log")
    assert bar.disable and list(bar) == [0, 1, 2] and log.getvalue() == ""  # a disabled bar still iterates
    assert progress_bar(range(3), enabled=False, file=tty).disable
    forced = io.StringIO()
    list(progress_bar(range(3), enabled=True, force=True, file=forced, desc="forced"))
    assert "forced" in forced.getvalue()
    with no_progress_bars():
        assert progress_bar(range(3), enabled=True, force=True, file=Terminal()).disable
    assert bars_allowed()


def test_a_bar_checks_stderr_by_default_at_the_time_it_is_made(monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert progress_bar(range(2), enabled=True).disable
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not progress_bar(range(2), enabled=True).disable


def test_solver_bars_stay_out_of_a_log_file(monkeypatch):
    field = LearnedVectorFieldODE(lambda x, t: -x)
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    make_solver("euler", field, progress=True).simulate(torch.ones(2, 3), uniform_time_grid(5))
    assert log.getvalue() == ""
    tty = Terminal()
    monkeypatch.setattr(sys, "stderr", tty)
    make_solver("euler", field, progress=True).simulate(torch.ones(2, 3), uniform_time_grid(5))
    assert "EulerSolver" in tty.getvalue()


@pytest.fixture
def made_bars(monkeypatch):
    """(desc, shown) of every bar made through imgflow.core.progress while the test runs."""
    made, real = [], progress_module.progress_bar

    def recording(*args, **kwargs):
        bar = real(*args, **kwargs)
        made.append((kwargs.get("desc", ""), not bar.disable))
        return bar

    monkeypatch.setattr(progress_module, "progress_bar", recording)
    return made


def train_on_folder(tmp_path, name: str, *extra: str) -> int:
    """The train command on a tiny folder of PNGs, with a cache of its own (so each call converts the folder)."""
    pngs = tmp_path / "pngs"
    if not pngs.is_dir():
        export_image_folder(blob_images(12, size=8), pngs)
    argv = ["--data.dataset", "folder", "--data.folder.path", str(pngs), "--data.folder.cache_dir", str(tmp_path / f"cache-{name}"),
            "--data.folder.channels", "1", "--data.image_size", "8", "--model.unet.base_channels", "8",
            "--model.unet.channel_mults", "[1, 2]", "--model.unet.attention_resolutions", "[]", "--train.steps", "1",
            "--train.batch_size", "4", "--train.sample_every", "0", "--run.output_dir", str(tmp_path / f"run-{name}"), *extra]
    return run(train_main, argv)


def test_no_progress_hides_the_folder_conversion_bar_of_the_train_command(tmp_path, monkeypatch, made_bars):
    tty_out, tty_err = Terminal(), Terminal()
    monkeypatch.setattr(sys, "stdout", tty_out)
    monkeypatch.setattr(sys, "stderr", tty_err)
    assert train_on_folder(tmp_path, "watched") == 0
    converting = [shown for desc, shown in made_bars if desc.startswith("converting")]
    assert converting == [True], made_bars  # on a terminal the conversion shows its bar
    made_bars.clear()
    assert train_on_folder(tmp_path, "quiet", "--no-progress") == 0
    assert [d for d, _ in made_bars if d.startswith("converting")] and not any(shown for _, shown in made_bars), made_bars
    assert bars_allowed()  # --no-progress ended with its command
    assert "converting" not in tty_err.getvalue() + tty_out.getvalue()


def test_the_conversion_bar_stays_out_of_a_log_file_without_no_progress(tmp_path, monkeypatch, made_bars):
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert train_on_folder(tmp_path, "logged") == 0
    assert [shown for desc, shown in made_bars if desc.startswith("converting")] == [False], made_bars
