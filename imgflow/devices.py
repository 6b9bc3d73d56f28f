"""Which device to compute on: CUDA, then Apple's MPS, then the CPU, and the float type each can hold.

    from imgflow.devices import default_device, float_dtype
    device = default_device()                  # cuda if a GPU is visible, else mps on an Apple-silicon Mac, else cpu
    x = torch.zeros(3, dtype=float_dtype(device))   # float64 where the device has it, float32 on MPS

MPS has no float64: code that wants double precision (the 2-D lab's exact mixture fields, Fréchet
distances) asks `float_dtype(device)` and gets float32 there. `Sampler.from_checkpoint`, the scripts'
`--device` default and the trainer (through accelerate) all choose with `default_device`.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor


def mps_available() -> bool:
    """Whether this torch build can use Apple's Metal GPU here."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def default_device() -> torch.device:
    """cuda if available, else mps if available, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_device(device: torch.device | str | None = None) -> torch.device:
    """A device from a name ('cuda', 'cuda:1', 'mps', 'cpu'), or `default_device()` for None or 'auto'."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def has_float64(device: torch.device | str) -> bool:
    """Whether tensors of float64 can live on the device (all but MPS)."""
    return torch.device(device).type != "mps"


def float_dtype(device: torch.device | str, wanted: torch.dtype = torch.float64) -> torch.dtype:
    """`wanted`, or float32 where the device cannot hold it (float64 on MPS)."""
    return torch.float32 if wanted == torch.float64 and not has_float64(device) else wanted


def to_device(x: Tensor, device: torch.device | str) -> Tensor:
    """x on the device; a float64 tensor becomes float32 on a device without float64 (rather than failing)."""
    device = torch.device(device)
    return x.to(device=device, dtype=float_dtype(device, x.dtype)) if x.is_floating_point() else x.to(device)


def restart_launch_problem(environ: dict[str, str] | None = None) -> str | None:
    """Why a torchrun launch with restarts would fail at its first restart, or None.

    torchrun shares its rendezvous TCP store with the workers' process group (TORCHELASTIC_USE_AGENT_STORE); after a
    restart the new workers can then read the previous attempt's addresses and fail or hang in init_process_group
    (pytorch/pytorch#135712; with torch 2.14 and gloo on one machine, 3 of 5 restarts failed or hung, none of 3 with
    the variable set). Setting TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 for torchrun gives each attempt a store of its own.
    """
    env = os.environ if environ is None else environ
    try:
        restarts = int(env.get("TORCHELASTIC_MAX_RESTARTS", "0"))
    except ValueError:
        restarts = 0
    if restarts > 0 and env.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        return (f"torchrun --max-restarts {restarts} shares its rendezvous store with the workers, and a restarted job can then "
                "connect to the previous attempt's addresses and fail or hang (pytorch#135712); launch it as "
                "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 torchrun ... (docs/devices.md)")
    return None


__all__ = ["default_device", "float_dtype", "has_float64", "mps_available", "resolve_device", "restart_launch_problem",
           "to_device"]

