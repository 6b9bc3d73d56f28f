"""Past one machine, on one machine: two torchrun agents as two nodes, restarts that resume by themselves, a run moving
between process counts, and sampling sharded over processes (docs/devices.md)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imgflow.checkpoint import load_checkpoint
from imgflow.training.metrics_log import read_metrics
from tests.image_helpers import blob_images, tiny_config, write_idx_mnist
from tests.test_image_ddp import launch, train_command

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.torchrun,
    pytest.mark.skipif(importlib.util.find_spec("torch.distributed.run") is None, reason="torchrun is not available"),
]



def test_a_killed_worker_is_restarted_by_torchrun_and_the_run_resumes_itself_bit_exactly(tmp_path):
    """`resume="auto"` under `torchrun --max-restarts 1`: rank 1 is SIGKILLed as it starts step 4 of 6 (after the
    checkpoint of step 2); the agent restarts both workers with the same command, which finds that checkpoint and
    continues. Same process count: bit-exact. Without TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 the trainer refuses to start
    (`restart_launch_problem`): the restart would reuse the previous attempt's store entries."""
    import os
    import time

    driver = str(Path(__file__).resolve().parent / "ddp_restart_driver.py")
    runs = {}
    for name, kill_at in (("restarted", 4), ("straight", 0)):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--max-restarts", "1",
               driver, str(tmp_path / name), str(kill_at)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
        runs[name] = (proc, time.perf_counter() - start)
        assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    restarted = runs["restarted"][0].stdout
    assert (tmp_path / "restarted.killed").exists() and not (tmp_path / "straight.killed").exists()
    assert "attempt 1: rank 0 from step 2" in restarted and "attempt 1: rank 1 from step 2" in restarted, restarted
    assert "attempt 0: rank 0 from step 0" in runs["straight"][0].stdout
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "restarted")
    assert a.step == b.step == 6
    for key in a.model:
        assert torch.equal(a.model[key], b.model[key]), key
    for key in a.ema:
        assert torch.equal(a.ema[key], b.ema[key]), key
    assert [m["loss"] for m in read_metrics(tmp_path / "straight")] == [m["loss"] for m in read_metrics(tmp_path / "restarted")]
    print(f"wall clock: straight {runs['straight'][1]:.1f} s, killed and restarted {runs['restarted'][1]:.1f} s")


def test_a_restartable_launch_that_would_reuse_the_old_store_is_refused_with_the_fix():
    from imgflow.devices import restart_launch_problem

    shared = {"TORCHELASTIC_MAX_RESTARTS": "2", "TORCHELASTIC_USE_AGENT_STORE": "True"}
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun" in restart_launch_problem(shared)
    assert restart_launch_problem({**shared, "TORCHELASTIC_USE_AGENT_STORE": "False"}) is None  # the variable was set
    assert restart_launch_problem({**shared, "TORCHELASTIC_MAX_RESTARTS": "0"}) is None  # no restarts: nothing to reuse
    assert restart_launch_problem({}) is None  # not under torchrun


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_nodes(tmp_path, out, steps, resume=False):
    """Two torchrun agents, one process each, meeting at a c10d rendezvous on localhost: two "nodes" on one machine."""
    args = train_command(tmp_path, out, steps, resume, extra=["--train.sample_every", "0"])
    endpoint = f"127.0.0.1:{free_port()}"
    agents = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                                "--rdzv-backend", "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", out, "--node-rank", str(rank), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for rank in range(2)]
    outputs = [agent.communicate(timeout=300) for agent in agents]
    for agent, (_, stderr) in zip(agents, outputs, strict=True):
        assert agent.returncode == 0, stderr[-3000:]
    return "".join(stdout for stdout, _ in outputs)


def test_two_nodes_train_checkpoint_and_resume_like_one_process(tmp_path):
    write_idx_mnist(tmp_path / "data", n_train=64)
    first = launch_two_nodes(tmp_path, "nodes", steps=3)
    assert "2 process(es) on 2 node(s)" in first and "global batch 8 = 2 x 1 x 4" in first and first.count("training unet") == 1
    launch_two_nodes(tmp_path, "nodes", steps=6, resume=True)
    launch(tmp_path, "one", nproc=1, steps=6)
    one_loss = [m["loss"] for m in read_metrics(tmp_path / "one")]
    nodes_loss = [m["loss"] for m in read_metrics(tmp_path / "nodes")]
    assert len(nodes_loss) == 6 and nodes_loss == pytest.approx(one_loss, rel=1e-5)  # the DDP tolerance of the tests above
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(tmp_path / "nodes")
    assert b.step == 6
    for key in a.model:
        assert torch.allclose(a.model[key], b.model[key], atol=1e-5), key
    print("max |w(one) - w(two nodes)|:", max(float((a.model[k] - b.model[k]).abs().max()) for k in a.model),
          "max loss rel diff:", max(abs(x - y) / abs(x) for x, y in zip(one_loss, nodes_loss, strict=True)))


def test_a_run_moves_between_process_counts_with_the_same_global_batches(tmp_path):
    """train.micro_batch = 4 of a global batch of 8: 1 process accumulates 2 micro-batches, 2 processes take one each.
    Steps 1-2 on one process, 3-4 on two (resumed), 5-6 on one again, against 6 steps on one process: the same rows
    every step, so the curves agree to the DDP tolerance (only the order of float sums differs)."""
    write_idx_mnist(tmp_path / "data", n_train=64)
    extra = ["--train.micro_batch", "4", "--train.checkpoint_every", "2"]
    launch(tmp_path, "moved", nproc=1, steps=2, extra=extra)
    two = launch(tmp_path, "moved", nproc=2, steps=4, resume=True, extra=extra)
    assert "global batch 8 = 2 x 1 x 4 | from step 2 to 4" in two.stdout
    launch(tmp_path, "moved", nproc=1, steps=6, resume=True, extra=extra)
    launch(tmp_path, "straight", nproc=1, steps=6, extra=extra)
    moved = [m["loss"] for m in read_metrics(tmp_path / "moved")]
    straight = [m["loss"] for m in read_metrics(tmp_path / "straight")]
    assert [m["step"] for m in read_metrics(tmp_path / "moved")] == [1, 2, 3, 4, 5, 6]
    assert moved[:2] == straight[:2] and moved == pytest.approx(straight, rel=1e-5)
    a, b = load_checkpoint(tmp_path / "straight"), load_checkpoint(tmp_path / "moved")
    for key in a.model:
        assert torch.allclose(a.model[key], b.model[key], atol=1e-5), key
    print("max |w(straight) - w(moved)|:", max(float((a.model[k] - b.model[k]).abs().max()) for k in a.model),
          "max loss rel diff:", max(abs(x - y) / abs(x) for x, y in zip(straight, moved, strict=True)))


def test_sampling_under_torchrun_draws_shards_and_gathers_one_processs_images(tmp_path):
    """10 samples on 2 processes (5 each, batches of 3 so the blocks do not align with batches) equal one process's
    to float rounding, with an SDE solver whose Brownian draws are seeded per sample index; one process writes."""
    from safetensors.torch import load_file

    from imgflow.cli import run
    from imgflow.cli.sample import main as sample_main
    from imgflow.sharding import Shards
    from imgflow.training.trainer import train

    assert [list(Shards(r, 3).block(10)) for r in range(3)] == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]
    assert list(Shards(1, 4).block(2)) == [0]  # and some ranks may draw none
    train(tiny_config(tmp_path / "run", **{"train.steps": 2}), data=blob_images(32), progress=False)
    common = [str(tmp_path / "run"), "--num-images", "10", "--steps", "3", "--batch-size", "3", "--solver", "euler_maruyama", "--no-progress"]
    assert run(sample_main, [*common, "--out", str(tmp_path / "one.png"), "--raw", str(tmp_path / "one.safetensors")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(REPO / "scripts/sample_images.py"),
           *common, "--out", str(tmp_path / "two.png"), "--raw", str(tmp_path / "two.safetensors")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1 and "2 processes" in proc.stdout  # rank 0 alone writes and reports
    one, two = load_file(str(tmp_path / "one.safetensors")), load_file(str(tmp_path / "two.safetensors"))
    assert torch.equal(one["labels"], two["labels"])
    assert torch.allclose(one["images"], two["images"], atol=1e-5), float((one["images"] - two["images"]).abs().max())
