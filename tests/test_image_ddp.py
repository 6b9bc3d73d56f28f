"""Two processes under torchrun on CPU train exactly like one process at the same global batch."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imgflow.checkpoint import load_checkpoint
from imgflow.training.metrics_log import read_metrics
from tests.image_helpers import blob_images, tiny_config, write_idx_mnist

REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.torchrun,
    pytest.mark.skipif(importlib.util.find_spec("torch.distributed.run") is None, reason="torchrun is not available"),
]


def launch(tmp_path, out, nproc, steps, resume=False, extra=()):
    args = [
        str(REPO / "scripts/train_images.py"), "--config", str(REPO / "configs/smoke.toml"),
        "--data.data_root", str(tmp_path / "data"), "--data.download", "false",
        "--model.unet.base_channels", "8", "--train.steps", str(steps), "--train.batch_size", "8",
        "--train.log_every", "1", "--train.checkpoint_every", "3", "--train.sample_every", "6",
        "--sample.num_images", "4", "--sample.num_steps", "2", "--run.output_dir", str(tmp_path / out), "--no-progress",
    ]
    args += list(extra)
    if resume:
        args += ["--resume", "latest"]
    if nproc == 1:  # the one-process reference runs in this process: one interpreter start fewer
        from imgflow.cli import run
        from imgflow.cli.train import main as train_main

        assert run(train_main, args[1:]) == 0
        return None
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_two_processes_match_one_and_write_one_set_of_files(tmp_path):
    write_idx_mnist(tmp_path / "data", n_train=64)
    two = launch(tmp_path, "two", nproc=2, steps=6)
    launch(tmp_path, "one", nproc=1, steps=6)
    assert "2 process(es)" in two.stdout and two.stdout.count("training unet") == 1  # one process reports

    run = tmp_path / "two"
    assert sorted(p.name for p in run.iterdir()) == sorted(
        [".lock", "ckpt-00000003.safetensors", "ckpt-00000006.safetensors", "config.json", "latest", "metrics.jsonl", "samples"]
    )
    assert [p.name for p in (run / "samples").iterdir()] == ["step-00000006.png"]
    # the same samples in every global batch: the curves differ only by the order of float sums
    one_loss = [m["loss"] for m in read_metrics(tmp_path / "one")]
    two_loss = [m["loss"] for m in read_metrics(run)]
    assert len(two_loss) == 6
    assert two_loss == pytest.approx(one_loss, rel=1e-5)
    a, b = load_checkpoint(tmp_path / "one"), load_checkpoint(run)
    for key in a.model:
        assert torch.allclose(a.model[key], b.model[key], atol=1e-5), key

    # resume under torchrun: 3 steps, then 3 more from `latest`, equals the 6-step run
    launch(tmp_path, "split", nproc=2, steps=3)
    launch(tmp_path, "split", nproc=2, steps=6, resume=True)
    c = load_checkpoint(tmp_path / "split")
    assert c.step == 6
    for key in b.model:
        assert torch.allclose(b.model[key], c.model[key], atol=1e-6), key
    assert [m["step"] for m in read_metrics(tmp_path / "split")] == [1, 2, 3, 4, 5, 6]


MEAN_FLOW = ["--flow.objective", "mean_flow", "--model.unet.second_time", "interval", "--flow.mean_flow.guidance", "1.5",
             "--flow.mean_flow.equal_fraction", "0.25", "--sample.solver", "flow_map", "--sample.num_steps", "1"]


def test_mean_flow_under_two_processes_matches_one(tmp_path):
    """The MeanFlow target is a JVP through the bare module; the prediction goes through DDP, so gradients are synchronised.

    If the JVP's forward were the one carrying the gradient, DDP's hooks would not fire, each process
    would step with its own half-batch gradient, and the two-process weights would drift from the
    one-process run: this comparison would fail.
    """
    write_idx_mnist(tmp_path / "data", n_train=64)
    launch(tmp_path, "mf-two", nproc=2, steps=6, extra=MEAN_FLOW)
    launch(tmp_path, "mf-one", nproc=1, steps=6, extra=MEAN_FLOW)
    one_loss = [m["loss"] for m in read_metrics(tmp_path / "mf-one")]
    two_loss = [m["loss"] for m in read_metrics(tmp_path / "mf-two")]
    assert len(two_loss) == 6 and two_loss == pytest.approx(one_loss, rel=1e-5)
    a, b = load_checkpoint(tmp_path / "mf-one"), load_checkpoint(tmp_path / "mf-two")
    assert a.config.flow.objective == "mean_flow" and a.config.model.unet.second_time == "interval"
    for key in a.model:
        assert torch.allclose(a.model[key], b.model[key], atol=1e-5), key


def test_a_non_finite_loss_on_one_process_is_skipped_by_every_process(tmp_path):
    """on_nonfinite = 'skip' is agreed across processes: rank 1 alone gets a NaN loss at step 3, its gradient reaches
    both replicas through DDP's average, and both skip that update, so their weights stay equal and finite."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO / "tests" / "ddp_skip_driver.py"), str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("non-finite loss in step 3; skipped the update on every process") == 1
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    for key, value in ranks[0].items():
        assert torch.isfinite(value).all() and torch.equal(value, ranks[1][key]), key


def test_mean_flow_through_the_ddp_handle_with_dropout_matches_the_bare_module(tmp_path):
    """With dropout > 0 the trainer's handle around a DistributedDataParallel wrapper gives the loss and gradients of
    the bare module: every row draws the dropout mask it draws there (the r = t rows first, then the jump rows from
    the random state their JVP started at). One pass over all rows would draw masks for B rows where the JVP drew
    them for B - k, and no row's mask would match. Tolerances: the JVP's primal and a plain forward pass may sum in
    another order (1e-6 against a loss of order 1, relative 1e-4 on gradients)."""
    import copy

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from imgflow.resolved_run import resolve_run
    from imgflow.training.batches import BatchSchedule, assemble_micro_batch, draw_global_batch
    from imgflow.training.model_handle import TrainingModel

    cfg = tiny_config(tmp_path / "run", **{"flow.objective": "mean_flow", "model.unet.dropout": 0.3, "flow.mean_flow.equal_fraction": 0.5,
                                           "sample.solver": "flow_map", "sample.num_steps": 1})
    data = blob_images(16)
    run = resolve_run(cfg, data=data)
    batch = draw_global_batch(3, seed=0, schedule=BatchSchedule(16, 8, 0), image_shape=run.spec.shape, draw_times=run.objective.draw_times,
                              label_dropout=0.1, device="cpu")
    micro = assemble_micro_batch(batch, slice(0, 8), run.data, hflip=False, null_label=run.null_label)
    torch.manual_seed(5)
    for p in run.network.parameters():  # away from the zero-initialised output layers, which would hide every dropout mask
        torch.nn.init.normal_(p, std=0.2)
    net, twin = run.network.train(), copy.deepcopy(run.network).train()

    def loss_and_grads(handle, module):
        torch.manual_seed(11)
        loss = run.objective.per_sample_loss(handle, micro)[0].mean()
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in module.parameters()]

    bare_loss, bare_grads = loss_and_grads(TrainingModel(net, net), net)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(twin)
        ddp_loss, ddp_grads = loss_and_grads(TrainingModel(wrapped, twin), twin)
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(ddp_loss, bare_loss, atol=1e-6, rtol=0)
    for a, b in zip(ddp_grads, bare_grads):
        torch.testing.assert_close(a, b, atol=1e-7, rtol=1e-4)


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
    args = [str(REPO / "scripts/train_images.py"), "--config", str(REPO / "configs/smoke.toml"), "--data.data_root", str(tmp_path / "data"),
            "--data.download", "false", "--model.unet.base_channels", "8", "--train.steps", str(steps), "--train.batch_size", "8",
            "--train.log_every", "1", "--train.checkpoint_every", "3", "--train.sample_every", "0", "--run.output_dir",
            str(tmp_path / out), "--no-progress", *(["--resume", "latest"] if resume else [])]
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
    from tests.image_helpers import blob_images, tiny_config

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
