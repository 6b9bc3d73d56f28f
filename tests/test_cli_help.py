"""Every command (imgflow.cli.commands.COMMANDS) says how to run it: its --help shows example invocations, and every
example's arguments parse with the parser of the command it names; `python -m imgflow` lists and runs the commands."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from imgflow.__main__ import main as imgflow_main
from imgflow.cli import run
from imgflow.cli.commands import COMMANDS, Command, usage

ROOT = Path(__file__).resolve().parents[1]
#: how an example line starts: a script of a clone, the package's module, accelerate, an installed entry point
EXAMPLE = re.compile(r"^(srun )?(python scripts/|python -m imgflow |accelerate launch |imgflow-)")
BY_SCRIPT = {c.script: name for name, c in COMMANDS.items()}
BY_ENTRY_POINT = {c.entry_point: name for name, c in COMMANDS.items() if c.entry_point}


def examples(text: str) -> list[str]:
    """The example command lines of a help text: lines that start like EXAMPLE, joined over trailing backslashes."""
    found, pending = [], ""
    for line in text.splitlines():
        line = line.strip()
        if pending or EXAMPLE.match(line):
            pending += line.removesuffix("\\").rstrip() + " "
            if not line.endswith("\\"):
                found.append(pending.strip())
                pending = ""
    return found


def invoked(example: str) -> tuple[str, list[str]]:
    """(command name, its arguments) of an example line; a # comment at its end is dropped."""
    words = shlex.split(example, comments=True)
    if words[0] == "srun":
        words = words[1:]
    if words[:3] == ["python", "-m", "imgflow"] or words[:4] == ["accelerate", "launch", "-m", "imgflow"]:
        at = words.index("imgflow")
        return words[at + 1], words[at + 2:]
    if words[0].startswith("imgflow-"):
        return BY_ENTRY_POINT[words[0]], words[1:]
    script = next(i for i, w in enumerate(words) if w.startswith("scripts/"))  # python scripts/x.py, accelerate launch [opts] scripts/x.py
    return BY_SCRIPT[words[script].removeprefix("scripts/")], words[script + 1:]


def help_text(cmd: Command, capsys: pytest.CaptureFixture[str]) -> str:
    assert run(cmd.load().main, ["--help"]) == 0
    return capsys.readouterr().out


def parses(name: str, argv: list[str]) -> None:
    """argv parses with the command's parser (build_parser: nothing runs), or the test fails with argparse's message."""
    try:
        args = COMMANDS[name].load().build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{name} {shlex.join(argv)}: argparse refused it (exit {exc.code})")
    if name == "slurm":  # the arguments after -- are the training script's
        parses("train", args.train_args)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_shows_examples_and_they_parse(name, capsys):
    text = help_text(COMMANDS[name], capsys)
    found = examples(text)
    assert found, f"{name} --help shows no example line starting with python scripts/, python -m imgflow, accelerate launch or imgflow-"
    assert any(invoked(e)[0] == name for e in found), f"{name} --help has no example of itself: {found}"
    for example in found:
        command, argv = invoked(example)
        parses(command, argv)


def test_the_example_reader_sees_continuations_comments_and_launchers():
    text = ("    python scripts/nfe_sweep.py runs/m --classifier c \\\n        --out-dir o   # the table\n"
            "prose about python scripts/x.py\n    accelerate launch --num_processes 2 scripts/train_images.py --config mnist\n"
            "    srun python scripts/slurm_launch.py -- --config smoke\n    imgflow-sample runs/m --out g.png\n")
    found = examples(text)
    assert found == ["python scripts/nfe_sweep.py runs/m --classifier c --out-dir o   # the table",
                     "accelerate launch --num_processes 2 scripts/train_images.py --config mnist",
                     "srun python scripts/slurm_launch.py -- --config smoke", "imgflow-sample runs/m --out g.png"]
    assert [invoked(e) for e in found] == [("sweep", ["runs/m", "--classifier", "c", "--out-dir", "o"]), ("train", ["--config", "mnist"]),
                                           ("slurm", ["--", "--config", "smoke"]), ("sample", ["runs/m", "--out", "g.png"])]
    with pytest.raises(pytest.fail.Exception, match="argparse refused"):
        parses("sample", ["runs/m"])  # --out is required


def test_the_command_list_matches_the_scripts_and_the_entry_points():
    declared = dict(re.findall(r'^(imgflow-[\w-]+) = "imgflow\.cli:(\w+)"', (ROOT / "pyproject.toml").read_text(), re.M))
    assert sorted(declared) == sorted(BY_ENTRY_POINT)
    import imgflow.cli

    for entry, function in declared.items():  # each entry function's docstring names its command
        assert f"python -m imgflow {BY_ENTRY_POINT[entry]}." in getattr(imgflow.cli, function).__doc__
    for name, cmd in COMMANDS.items():
        shim = (ROOT / "scripts" / cmd.script).read_text()
        assert f"from imgflow.cli.{cmd.module} import main" in shim, f"scripts/{cmd.script} does not run the {name} command"
        assert callable(cmd.load().main)


def test_python_m_imgflow_lists_every_command_and_its_examples_parse(capsys):
    assert imgflow_main([]) == 0
    out = capsys.readouterr().out
    assert out == usage() + "\n"
    for name, cmd in COMMANDS.items():
        assert re.search(rf"^  {re.escape(name)} +{re.escape(cmd.summary)}$", out, re.M), name
    for example in examples(out):
        parses(*invoked(example))


def test_python_m_imgflow_runs_a_command_and_passes_its_exit_status_through(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert imgflow_main(["plot-metrics", "--help"]) == 0
    assert "python scripts/plot_metrics.py runs/mnist --out loss.png" in capsys.readouterr().out
    assert imgflow_main(["train", "--config", "mnst"]) == 2  # a user error in the command: its one line and exit 2
    err = capsys.readouterr().err
    assert err.startswith("error: config file mnst does not exist") and err.count("\n") == 1
    assert imgflow_main(["sample", "runs/none"]) == 2  # argparse's own: --out is required
    assert "--out" in capsys.readouterr().err


def test_an_unknown_command_is_one_line_with_the_nearest_name(capsys):
    assert imgflow_main(["sampel", "runs/x"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown command 'sampel'; did you mean 'sample'?") and err.count("\n") == 1
    assert imgflow_main(["zzz"]) == 2
    assert "did you mean" not in capsys.readouterr().err


def test_python_m_imgflow_as_a_process(tmp_path):
    """The real `python -m imgflow`, from a folder outside the clone: the list on stdout, an unknown command exits 2."""
    listing = subprocess.run([sys.executable, "-m", "imgflow"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0 and "train-classifier" in listing.stdout and listing.stderr == ""
    wrong = subprocess.run([sys.executable, "-m", "imgflow", "trian"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2 and "did you mean 'train'?" in wrong.stderr and wrong.stdout == ""
