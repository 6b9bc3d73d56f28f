"""Reliability: SIGKILL at random steps or mid-checkpoint, then resume, equals an uninterrupted run
bit for bit; every bad input gets one clear line and changes nothing on disk."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from imgflow.checkpoint import load_checkpoint
from imgflow.cli import run
from imgflow.cli.sample import main as sample_main
from imgflow.cli.train import main as train_main
from imgflow.training.metrics_log import read_metrics
from tests.image_helpers import blob_images, tiny_config, write_idx_mnist

REPO = Path(__file__).resolve().parents[1]
STEPS = 24


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    write_idx_mnist(root / "data", n_train=96, n_test=16)
    return root


def train_args(root, out, steps=STEPS, extra=()):
    return [
        "--config", str(REPO / "configs/smoke.toml"), "--data.data_root", str(root / "data"), "--data.download", "false",
        "--model.unet.base_channels", "8", "--model.unet.dropout", "0.1", "--train.steps", str(steps), "--train.batch_size", "8",
        "--train.log_every", "1", "--train.checkpoint_every", "3", "--train.keep_last", "2", "--train.sample_every", "0",
        "--run.output_dir", str(root / out), "--no-progress", "--threads", "1", *extra,
    ]


def run_train(args, env=None, driver=False):
    script = REPO / ("tests/fault_driver.py" if driver else "scripts/train_images.py")
    return subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300, env=env)


def train_here(args) -> int:
    """The train command in this process (a resume after a kill, a reference run): no interpreter start-up to pay.
    The killed runs themselves are separate processes, one thread like this one (--threads 1), so states compare bit for bit."""
    return run(train_main, args)


@pytest.fixture(scope="module")
def reference(workspace):
    assert train_here(train_args(workspace, "reference")) == 0
    return load_checkpoint(workspace / "reference")


def assert_same_final_state(a, b):
    assert a.step == b.step == STEPS
    for group in ("model", "ema", "optimizer"):
        x, y = getattr(a, group), getattr(b, group)
        if group == "optimizer":
            x, y = x["state"], y["state"]
            assert x.keys() == y.keys()
            for idx in x:
                assert all(torch.equal(x[idx][k], y[idx][k]) for k in x[idx]), (group, idx)
        else:
            assert x.keys() == y.keys()
            assert all(torch.equal(x[k], y[k]) for k in x), [k for k in x if not torch.equal(x[k], y[k])][:3]
    assert a.scheduler["last_epoch"] == b.scheduler["last_epoch"]


def wait_for_step(run_dir, step, proc, timeout=120):
    """Poll metrics.jsonl until it records `step` (the run is then somewhere in step+1)."""
    metrics = run_dir / "metrics.jsonl"
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if metrics.exists():
            lines = [ln for ln in metrics.read_text().splitlines() if ln.endswith("}")]
            if lines and json.loads(lines[-1])["step"] >= step:
                return
        time.sleep(0.005)
    raise AssertionError(f"the run never reached step {step}")


@pytest.mark.parametrize("kill_seed", [0, 1, 2])
def test_sigkill_at_a_random_step_then_resume_is_bit_exact(workspace, reference, kill_seed):
    kill_step = random.Random(kill_seed).randint(4, STEPS - 3)  # after the first checkpoint (step 3)
    out = f"killed-{kill_seed}"
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts/train_images.py"), *train_args(workspace, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_step(workspace / out, kill_step, proc)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    interrupted_at = load_checkpoint(workspace / out).step
    assert interrupted_at < STEPS
    assert train_here(train_args(workspace, out, extra=["--resume", "latest"])) == 0
    assert_same_final_state(reference, load_checkpoint(workspace / out))
    assert [m["step"] for m in read_metrics(workspace / out)] == list(range(1, STEPS + 1))


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_checkpoints_the_current_step_then_resume_is_bit_exact(workspace, reference, sig):
    kill_step = random.Random(int(sig)).randint(4, STEPS - 4)
    out = f"signalled-{sig.name}"
    proc = subprocess.Popen([sys.executable, str(REPO / "scripts/train_images.py"), *train_args(workspace, out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_step(workspace / out, kill_step, proc)
        os.kill(proc.pid, sig)
        _, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + int(sig)  # stopped on the signal, not finished and not killed
    lines = [ln for ln in stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith(f"interrupted: stopped by {sig.name} after step "), stderr
    stopped_at = int(lines[0].split("after step ")[1].split(";")[0])
    ckpt = load_checkpoint(workspace / out)
    # the checkpoint is of the step the signal arrived in (log_every = 1: metrics record every step), not the last periodic one
    assert ckpt.step == stopped_at == read_metrics(workspace / out)[-1]["step"] and kill_step <= stopped_at < STEPS
    assert (workspace / out / "latest").read_text() == f"ckpt-{stopped_at:08d}.safetensors"
    assert train_here(train_args(workspace, out, extra=["--resume", "latest"])) == 0
    assert_same_final_state(reference, load_checkpoint(workspace / out))
    assert [m["step"] for m in read_metrics(workspace / out)] == list(range(1, STEPS + 1))


def test_a_run_folder_in_use_refuses_a_second_run_until_its_process_dies(workspace, capsys):
    """Two processes (this one the second): a live run holds the folder; a fresh run or a resume into it fails in one line naming the
    holder; once the holder is SIGKILLed (its lock dies with it) the resume goes through."""
    out = workspace / "busy"
    holder = subprocess.Popen([sys.executable, str(REPO / "scripts/train_images.py"), *train_args(workspace, "busy", steps=100_000)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_step(out, 4, holder)  # a checkpoint exists at step 3
        for extra in ([], ["--resume", "latest"]):  # this process is the second one: the lock is the holder's
            capsys.readouterr()
            code = train_here(train_args(workspace, "busy", steps=8, extra=extra))
            lines = capsys.readouterr().err.strip().splitlines()
            assert code == 2 and len(lines) == 1, lines
            assert f"run folder {out} is in use by process {holder.pid} on " in lines[0] and "choose another run.output_dir" in lines[0]
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    step = load_checkpoint(out).step
    assert train_here(train_args(workspace, "busy", steps=step + 2, extra=["--resume", "latest"])) == 0
    assert load_checkpoint(out).step == step + 2


@pytest.mark.parametrize("fault", ["mid_write:9", "before_latest:9"])
def test_killed_while_checkpointing_keeps_the_previous_checkpoint(workspace, reference, fault):
    out = "fault-" + fault.replace(":", "-")
    env = {**os.environ, "IMGFLOW_FAULT": fault}
    proc = run_train(train_args(workspace, out), env=env, driver=True)
    assert proc.returncode == -signal.SIGKILL
    run = workspace / out
    assert (run / "latest").read_text() == "ckpt-00000006.safetensors"  # never the partial one
    assert load_checkpoint(run).step == 6  # still loadable
    if fault.startswith("mid_write"):
        assert list(run.glob(".ckpt-00000009*.tmp")) and not (run / "ckpt-00000009.safetensors").exists()
    assert train_here(train_args(workspace, out, extra=["--resume", "latest"])) == 0
    assert not list(run.glob(".*.tmp"))  # the stale temporary file is cleaned up
    assert_same_final_state(reference, load_checkpoint(run))


# --- bad input: one line, no traceback, nothing changed -------------------------------------


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def precious(workspace, reference):
    """A finished run (checkpoints + a sampled grid) that no bad command may touch."""
    run = workspace / "reference"
    grid = workspace / "grid.png"
    proc = subprocess.run([sys.executable, str(REPO / "scripts/sample_images.py"), str(run), "--out", str(grid), "--num", "4", "--steps", "2"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    ckpt = run / "ckpt-00000024.safetensors"
    (workspace / "truncated.safetensors").write_bytes(ckpt.read_bytes()[:4096])
    (workspace / "notes.safetensors").write_text("these are not tensors\n")
    # a checkpoint whose stored config describes another architecture than its weights
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(ckpt), framework="pt") as fh:
        meta = dict(fh.metadata())
    record = json.loads(meta["model_record"])  # what sampling builds the network from
    record["options"]["base_channels"] = 16
    meta["model_record"] = json.dumps(record)
    save_file(load_file(str(ckpt)), str(workspace / "other-arch.safetensors"), metadata=meta)
    (workspace / "a_file").write_text("x")
    return workspace


SMOKE = str(REPO / "configs/smoke.toml")
TRAIN_CASES = {
    "unknown key": (["--config", SMOKE, "--train.lrr", "1e-3"], "unrecognized arguments: --train.lrr"),
    "unknown key in file": (["--config", "{ws}/typo.toml"], "unknown config key 'train.setps'"),
    "mistyped value": (["--config", SMOKE, "--train.lr", "fast"], "train.lr (from command line) must be a number"),
    "negative lr": (["--config", SMOKE, "--train.lr=-1e-3"], "train.lr must be > 0"),
    "batch 0": (["--config", SMOKE, "--train.batch_size", "0"], "train.batch_size must be >= 1"),
    "guidance without classes": (["--config", SMOKE, "--model.class_conditional", "false", "--sample.guidance_scale", "2"],
                                 "needs a class-conditional model"),
    "indivisible image size": (["--config", SMOKE, "--model.unet.channel_mults", "[1, 2, 2, 2]", "--run.output_dir", "{ws}/new"], "not divisible"),
    "batch not divisible": (["--config", SMOKE, "--train.grad_accum", "3", "--run.output_dir", "{ws}/new"], "not divisible by processes"),
    "dataset missing offline": (["--config", SMOKE, "--data.data_root", "{ws}/empty", "--data.download", "false",
                                 "--run.output_dir", "{ws}/new"], "MNIST/raw"),
    "output not writable": (["--config", SMOKE, "--run.output_dir", "{ws}/a_file/run"], "cannot be created"),
    "resume from missing dir": (["--config", SMOKE, "--run.output_dir", "{ws}/nothing", "--resume", "latest"], "does not exist"),
    "resume from truncated file": (["--config", SMOKE, "--run.output_dir", "{ws}/new", "--resume", "{ws}/truncated.safetensors"],
                                   "not a readable safetensors checkpoint"),
    "resume another architecture": (["--run.output_dir", "{ws}/reference", "--config", SMOKE, "--model.unet.base_channels", "16",
                                     "--resume", "latest"], "cannot resume"),
    "fresh run into old run": (["--config", SMOKE, "--run.output_dir", "{ws}/reference"], "already holds checkpoints"),
    "missing config file": (["--config", "{ws}/nope.toml"], "does not exist"),
}
SAMPLE_CASES = {
    "missing checkpoint": (["{ws}/nope.safetensors", "--out", "{ws}/g2.png"], "does not exist"),
    "missing run folder": (["{ws}/no_such_run/", "--out", "{ws}/g2.png"], "does not exist"),
    "truncated checkpoint": (["{ws}/truncated.safetensors", "--out", "{ws}/g2.png"], "not a readable safetensors checkpoint"),
    "not safetensors": (["{ws}/notes.safetensors", "--out", "{ws}/g2.png"], "not a readable safetensors checkpoint"),
    "another architecture": (["{ws}/other-arch.safetensors", "--out", "{ws}/g2.png"], "does not match the model"),
    "unwritable output": (["{ws}/reference", "--out", "{ws}/a_file/g.png"], "does not exist"),
    "output is a folder": (["{ws}/reference", "--out", "{ws}/reference"], "is a folder; give a file name"),
    "unwritable raw output": (["{ws}/reference", "--out", "{ws}/g2.png", "--raw", "{ws}/a_file/s.safetensors"], "--raw folder"),
    "bad steps": (["{ws}/reference", "--out", "{ws}/g2.png", "--steps", "0"], "--steps must be >= 1"),
    "bad solver": (["{ws}/reference", "--out", "{ws}/g2.png", "--solver", "rk5"], "invalid choice: 'rk5'"),
}


def run_command_in_process(main, argv: list[str], capsys, monkeypatch, cwd: Path):
    """Run a command line's main (imgflow.cli.*) in this process; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(cwd)
    code = run(main, argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _check_one_line_error(code, stdout, stderr, expected):
    assert code == 2, (code, stderr[-2000:])
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr[-2000:]
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in stderr + stdout


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_bad_training_input_is_one_line_and_changes_nothing(precious, case, capsys, monkeypatch):
    ws = precious
    (ws / "typo.toml").write_text("[train]\nsetps = 10\n")
    before = snapshot(ws)
    args, expected = TRAIN_CASES[case]
    result = run_command_in_process(train_main, [a.format(ws=ws) for a in args], capsys, monkeypatch, ws)
    _check_one_line_error(*result, expected)
    assert snapshot(ws) == before
    assert not (ws / "new").exists()


@pytest.mark.parametrize("case", list(SAMPLE_CASES))
def test_bad_sampling_input_is_one_line_and_changes_nothing(precious, case, capsys, monkeypatch):
    ws = precious
    before = snapshot(ws)
    args, expected = SAMPLE_CASES[case]
    result = run_command_in_process(sample_main, [a.format(ws=ws) for a in args], capsys, monkeypatch, ws)
    _check_one_line_error(*result, expected)
    assert snapshot(ws) == before


def test_a_bad_input_process_prints_no_traceback(precious):
    """The same handling at process level: exit status 2 and a single stderr line."""
    ws = precious
    proc = subprocess.run([sys.executable, str(REPO / "scripts/sample_images.py"), str(ws / "notes.safetensors"), "--out", str(ws / "g3.png")],
                          capture_output=True, text=True, timeout=120)
    _check_one_line_error(proc.returncode, proc.stdout, proc.stderr, "not a readable safetensors checkpoint")


def test_a_disk_that_fills_while_checkpointing_ends_the_run_in_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch):
    """safetensors reports a full disk as SafetensorError(IoError ... StorageFull); the run stops naming the folder and the
    last good checkpoint, the temporary file is gone and the earlier checkpoint still loads (a resume continues)."""
    from safetensors import SafetensorError

    import imgflow.files
    from imgflow.checkpoint import CheckpointWriteError, load_checkpoint
    from imgflow.cli import USER_ERRORS
    from imgflow.training.trainer import Trainer

    real_save, calls = imgflow.files.save_file, []

    def filling_disk(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })')
        return real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(imgflow.files, "save_file", filling_disk)
    run = tmp_path / "run"
    cfg = tiny_config(run, **{"train.steps": 8, "train.checkpoint_every": 4})
    with pytest.raises(CheckpointWriteError) as info:
        Trainer(cfg, data=blob_images(32)).run(progress=False)
    message = str(info.value)
    assert "\n" not in message and f"step 8 into {run}" in message and "StorageFull" in message
    assert f"the last good checkpoint is {run / 'ckpt-00000004.safetensors'}" in message and "--resume latest" in message
    assert issubclass(CheckpointWriteError, USER_ERRORS)  # the CLI prints it as one line with exit status 2
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".ckpt")) == []
    assert load_checkpoint(run).step == 4
    monkeypatch.setattr(imgflow.files, "save_file", real_save)
    assert Trainer(cfg, resume="latest", data=blob_images(32)).run(progress=False).step == 8
