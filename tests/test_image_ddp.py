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


def train_command(tmp_path, out, steps, resume=False, extra=()):
    """scripts/train_images.py and its arguments: the smoke config on the IDX files in tmp_path/data, into tmp_path/out."""
    args = [
        str(REPO / "scripts/train_images.py"), "--config", str(REPO / "configs/smoke.toml"),
        "--data.data_root", str(tmp_path / "data"), "--data.download", "false",
        "--model.unet.base_channels", "8", "--train.steps", str(steps), "--train.batch_size", "8",
        "--train.log_every", "1", "--train.checkpoint_every", "3", "--train.sample_every", "6",
        "--sample.num_images", "4", "--sample.num_steps", "2", "--run.output_dir", str(tmp_path / out), "--no-progress",
    ]
    return [*args, *extra, *(["--resume", "latest"] if resume else [])]


def launch(tmp_path, out, nproc, steps, resume=False, extra=()):
    args = train_command(tmp_path, out, steps, resume, extra)
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

    # resume under torchrun: tests/test_cluster_runs.py (a restarted job, bit-exact; two nodes resumed)


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

