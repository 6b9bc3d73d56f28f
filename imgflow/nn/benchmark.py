"""Parameter counts and forward+backward timings of the image networks, as a table.

    python -m imgflow.nn.benchmark                      # all named configs, batch 64, CPU
    python -m imgflow.nn.benchmark --configs mnist lab --batch 128 --repeats 7
    python -m imgflow.nn.benchmark --device cuda --bf16 --channels-last

Times are the median over `repeats` timed runs after `warmup` untimed ones of one
forward + backward (+ zero_grad) on random data, with the model in training mode.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import torch
from torch import nn

from imgflow.nn.lab_unet import LabUNet
from imgflow.nn.unet import UNet, count_parameters

#: name -> (constructor, input shape (C, H, W), conditional?)
CONFIGS: dict[str, tuple[Callable[[], nn.Module], tuple[int, int, int], bool]] = {
    "cifar10": (
        lambda: UNet(
            in_channels=3, image_size=32, base_channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
            attention_resolutions=(16,), dropout=0.1,
        ),
        (3, 32, 32),
        False,
    ),
    "mnist": (
        lambda: UNet(
            in_channels=1, image_size=28, base_channels=32, channel_mults=(1, 2, 2), num_res_blocks=1,
            attention_resolutions=(7,), num_classes=10,
        ),
        (1, 28, 28),
        True,
    ),
    "tiny": (
        lambda: UNet(
            in_channels=1, image_size=28, base_channels=8, channel_mults=(1, 2), num_res_blocks=1,
            attention_resolutions=(), num_classes=10,
        ),
        (1, 28, 28),
        True,
    ),
    "lab": (lambda: LabUNet(), (1, 32, 32), True),
}


def time_step(
    model: nn.Module,
    shape: tuple[int, int, int],
    conditional: bool,
    batch: int,
    device: str,
    repeats: int,
    warmup: int,
    bf16: bool = False,
    channels_last: bool = False,
) -> float:
    """Median seconds of one forward + backward."""
    model = model.to(device).train()
    x = torch.randn(batch, *shape, device=device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    t = torch.rand(batch, device=device)
    y = torch.randint(0, 10, (batch,), device=device) if conditional else None
    times = []
    for i in range(warmup + repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
            out = model(x, t, y)
        out.square().mean().backward()
        model.zero_grad(set_to_none=True)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--bf16", action="store_true", help="autocast to bfloat16")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--no-time", action="store_true", help="only count parameters")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    print(f"device={args.device} threads={torch.get_num_threads()} batch={args.batch} "
          f"bf16={args.bf16} channels_last={args.channels_last} repeats={args.repeats}")
    print(f"{'config':<10} {'input':<12} {'parameters':>12} {'fwd+bwd s':>10} {'img/s':>8}")
    for name in args.configs:
        build, shape, conditional = CONFIGS[name]
        model = build()
        n = count_parameters(model)
        if args.no_time:
            print(f"{name:<10} {'x'.join(map(str, shape)):<12} {n:>12,}")
            continue
        sec = time_step(model, shape, conditional, args.batch, args.device, args.repeats, args.warmup,
                        args.bf16, args.channels_last)
        print(f"{name:<10} {'x'.join(map(str, shape)):<12} {n:>12,} {sec:>10.3f} {args.batch / sec:>8.1f}")


if __name__ == "__main__":
    main()
