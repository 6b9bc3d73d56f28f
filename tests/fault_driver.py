"""Run scripts/train_images.py with a fault injected, for the reliability tests.

IMGFLOW_FAULT=mid_write:STEP   SIGKILL halfway through writing the checkpoint file of STEP
IMGFLOW_FAULT=before_latest:STEP  SIGKILL after the checkpoint of STEP is renamed into place,
                                  before `latest` is updated
"""

import os
import runpy
import signal
import sys
from pathlib import Path

import imgflow.checkpoint as ckpt_module
import imgflow.files as files_module

REPO = Path(__file__).resolve().parents[1]
kind, _, step = os.environ.get("IMGFLOW_FAULT", ":").partition(":")
original_save, original_write = files_module.save_file, ckpt_module.atomic_write_bytes


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def save_file(tensors, filename, metadata=None):
    if kind == "mid_write" and metadata and metadata.get("step") == step:
        from safetensors.torch import save

        blob = save(tensors, metadata=metadata)
        with open(filename, "wb") as fh:
            fh.write(blob[: len(blob) // 2])
            fh.flush()
            os.fsync(fh.fileno())
        die()
    return original_save(tensors, filename, metadata=metadata)


def atomic_write_bytes(path, data):
    if kind == "before_latest" and path.name == "latest" and data.decode() == ckpt_module.checkpoint_name(int(step)):
        die()
    return original_write(path, data)


files_module.save_file = save_file
ckpt_module.atomic_write_bytes = atomic_write_bytes
sys.argv = [str(REPO / "scripts/train_images.py"), *sys.argv[1:]]
runpy.run_path(sys.argv[0], run_name="__main__")
