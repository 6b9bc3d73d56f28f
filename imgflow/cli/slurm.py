"""Run the training script under SLURM: one `srun` task per node starts one torchrun agent, all meeting at the first node.

    srun python scripts/slurm_launch.py --nproc-per-node 8 -- --config configs/cifar10_dit_gpu.toml --run.output_dir runs/c
    python scripts/slurm_launch.py --print -- --config configs/smoke.toml     # in an allocation: the command it would run

(launch/slurm_train.sbatch is the batch script around it). Each task reads SLURM's environment (SLURM_JOB_NODELIST,
SLURM_NNODES, SLURM_JOB_ID, SLURM_GPUS_ON_NODE) and replaces itself with

    torchrun --nnodes N --nproc-per-node G --rdzv-backend c10d --rdzv-endpoint FIRST_NODE:PORT --rdzv-id JOB_ID
             --max-restarts R scripts/train_images.py ARGS --resume auto

with TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 set (imgflow.devices.restart_launch_problem says why), so a worker that
dies is restarted by its agent and the run resumes from its own latest checkpoint; a requeued job does the same.
`--print` prints the command instead of running it.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from imgflow.cli import ArgumentParser
from imgflow.config import ConfigError

TRAIN_SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "train_images.py"


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list as names: "gpu[01-03,07],login2" -> gpu01, gpu02, gpu03, gpu07, login2 (what
    `scontrol show hostnames` prints; ranges keep their zero padding)."""
    hosts: list[str] = []
    for prefix, ranges, plain in re.findall(r"([^,\[\]]+)\[([^\]]+)\]|([^,\[\]]+)", nodelist):
        if plain:
            hosts.append(plain)
            continue
        for part in ranges.split(","):
            lo, _, hi = part.partition("-")
            if not hi:
                hosts.append(prefix + lo)
                continue
            if not (lo.isdigit() and hi.isdigit()) or int(hi) < int(lo):
                raise ConfigError(f"cannot read the SLURM node range {part!r} in {nodelist!r}; expected a range such as 01-04")
            hosts += [f"{prefix}{i:0{len(lo)}d}" for i in range(int(lo), int(hi) + 1)]
    if not hosts:
        raise ConfigError(f"SLURM_JOB_NODELIST {nodelist!r} names no node")
    return hosts


def torchrun_command(train_args: Sequence[str], environ: Mapping[str, str], *, nproc_per_node: int | None = None,
                     max_restarts: int = 3, port: int = 29500, train_script: str | Path = TRAIN_SCRIPT) -> list[str]:
    """The torchrun command this SLURM task runs (see the module docstring); `--resume auto` is added unless ARGS resume."""
    missing = [k for k in ("SLURM_JOB_NODELIST", "SLURM_JOB_ID") if not environ.get(k)]
    if missing:
        raise ConfigError(f"{', '.join(missing)} is not set: run this under SLURM (srun inside an sbatch job), or use torchrun directly")
    hosts = expand_nodelist(environ["SLURM_JOB_NODELIST"])
    nodes = int(environ.get("SLURM_NNODES", len(hosts)))
    if nproc_per_node is None:
        gpus = environ.get("SLURM_GPUS_ON_NODE", "")
        nproc_per_node = int(gpus) if gpus.isdigit() and int(gpus) > 0 else 1
    args = list(train_args)
    if not any(a == "--resume" or a.startswith("--resume=") for a in args):
        args += ["--resume", "auto"]
    return ["torchrun", "--nnodes", str(nodes), "--nproc-per-node", str(nproc_per_node), "--rdzv-backend", "c10d",
            "--rdzv-endpoint", f"{hosts[0]}:{port}", "--rdzv-id", environ["SLURM_JOB_ID"], "--max-restarts", str(max_restarts),
            str(train_script), *args]


def build_parser() -> ArgumentParser:
    """The options (the description is the module docstring, with its examples); main parses with it."""
    p = ArgumentParser(prog="slurm_launch.py", description=__doc__)
    p.add_argument("--nproc-per-node", type=int, help="processes per node (default: SLURM_GPUS_ON_NODE, else 1)")
    p.add_argument("--max-restarts", type=int, default=3, help="restarts of a failed worker group (default 3)")
    p.add_argument("--port", type=int, default=29500, help="rendezvous port on the first node (default 29500)")
    p.add_argument("--print", action="store_true", help="print the torchrun command instead of running it")
    p.add_argument("train_args", nargs="*", help="after --: the arguments of scripts/train_images.py")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cmd = torchrun_command(args.train_args, os.environ, nproc_per_node=args.nproc_per_node, max_restarts=args.max_restarts,
                           port=args.port)
    if args.print:
        print("TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 " + shlex.join(cmd))
        return 0
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, {**os.environ, "TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"})
    return 0  # not reached: exec replaces this process
