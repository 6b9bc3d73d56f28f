"""The device choice (CUDA, then MPS, then CPU) and float64 where the device has it, tested by faking availability."""

from __future__ import annotations

import argparse

import torch

import imgflow.devices as devices
from imgflow.cli import add_runtime_arguments, apply_runtime_arguments


def test_default_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    def fake(cuda: bool, mps: bool) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    fake(True, True)
    assert devices.default_device().type == "cuda"
    fake(False, True)
    assert devices.default_device().type == "mps" and devices.resolve_device("auto").type == "mps"
    assert devices.float_dtype("mps") == torch.float32 and devices.float_dtype("mps", torch.float16) == torch.float16
    assert devices.float_dtype("cpu") == torch.float64 and devices.float_dtype("cuda:0") == torch.float64
    parser = argparse.ArgumentParser()
    add_runtime_arguments(parser)
    args = parser.parse_args([])
    apply_runtime_arguments(args)
    assert args.device == "mps"  # the scripts' --device default follows the same order
    fake(False, False)
    assert devices.default_device().type == "cpu" and devices.resolve_device(None).type == "cpu"
    x = devices.to_device(torch.zeros(2, dtype=torch.float64), "cpu")
    assert x.dtype == torch.float64  # kept where the device has float64
