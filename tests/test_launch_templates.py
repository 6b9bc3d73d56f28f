"""The SLURM launcher's command under a faked SLURM environment, the node-list syntax, and the accelerate template."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from imgflow.cli import run
from imgflow.cli.slurm import TRAIN_SCRIPT, expand_nodelist, main, torchrun_command
from imgflow.config import ConfigError

REPO = Path(__file__).resolve().parents[1]
JOB = {"SLURM_JOB_NODELIST": "gpu[07-09,12]", "SLURM_NNODES": "4", "SLURM_JOB_ID": "4242", "SLURM_PROCID": "2",
       "SLURM_GPUS_ON_NODE": "8"}


def test_slurm_nodelists_expand_like_scontrol():
    assert expand_nodelist("gpu[07-09,12],login2") == ["gpu07", "gpu08", "gpu09", "gpu12", "login2"]
    assert expand_nodelist("a1,b[1-2]") == ["a1", "b1", "b2"]
    with pytest.raises(ConfigError, match="cannot read the SLURM node range '9-7'"):
        expand_nodelist("n[9-7]")


def test_every_task_of_a_job_runs_the_same_torchrun_agent_command_meeting_at_the_first_node():
    cmd = torchrun_command(["--config", "configs/mnist.toml"], JOB)
    assert cmd == ["torchrun", "--nnodes", "4", "--nproc-per-node", "8", "--rdzv-backend", "c10d", "--rdzv-endpoint", "gpu07:29500",
                   "--rdzv-id", "4242", "--max-restarts", "3", str(TRAIN_SCRIPT), "--config", "configs/mnist.toml", "--resume", "auto"]
    assert torchrun_command(["--config", "c.toml"], {**JOB, "SLURM_PROCID": "0"}) == torchrun_command(["--config", "c.toml"], JOB)
    # a resume the user chose is kept; no GPUs on the node: one process
    own = torchrun_command(["--resume", "runs/x/ckpt-00000100.safetensors"], {**JOB, "SLURM_GPUS_ON_NODE": ""}, max_restarts=0)
    assert own[own.index("--nproc-per-node") + 1] == "1" and own.count("--resume") == 1 and own[-1].endswith("ckpt-00000100.safetensors")
    assert TRAIN_SCRIPT.is_file()


def test_outside_slurm_the_launcher_says_what_to_do(monkeypatch, capsys):
    for key in JOB:
        monkeypatch.delenv(key, raising=False)
    assert run(main, ["--print", "--", "--config", "configs/mnist.toml"]) == 2
    assert "SLURM_JOB_NODELIST, SLURM_JOB_ID is not set: run this under SLURM" in capsys.readouterr().err


def test_the_launcher_prints_the_command_with_the_store_setting_restarts_need(monkeypatch, capsys):
    for key, value in JOB.items():
        monkeypatch.setenv(key, value)
    assert run(main, ["--print", "--nproc-per-node", "2", "--", "--config", "configs/mnist.toml"]) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun --nnodes 4 --nproc-per-node 2 ") and out.endswith("--resume auto")


def test_the_batch_script_is_valid_bash_and_runs_the_launcher_once_per_node():
    script = REPO / "launch" / "slurm_train.sbatch"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    text = script.read_text()
    assert "#SBATCH --ntasks-per-node=1" in text and "srun" in text and "scripts/slurm_launch.py" in text


def test_the_accelerate_multinode_template_is_a_config_accelerate_reads():
    from accelerate.commands.config.config_args import ClusterConfig

    config = ClusterConfig.from_yaml_file(str(REPO / "launch" / "accelerate_multinode.yaml"))
    assert (config.num_machines, config.num_processes, config.mixed_precision) == (2, 16, "bf16")
    assert config.distributed_type.value == "MULTI_GPU" and config.rdzv_backend == "static"
