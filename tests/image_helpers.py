"""Tiny image data and configs for the image-pipeline tests (no network, no ../shared)."""

from __future__ import annotations

import struct
from pathlib import Path

import torch

from imgflow.config import RunConfig, load_config
from imgflow.data import ImageData


def blob_images(n: int, size: int = 8, seed: int = 0) -> ImageData:
    """n uint8 images (n, 1, size, size): a bright square whose position encodes the label."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 10
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    half = max(size // 4, 1)
    for i, y in enumerate(labels.tolist()):
        r, c = divmod(y, 4)
        r0, c0 = (r * size) // 3, (c * size) // 4
        images[i, 0, r0 : r0 + half, c0 : c0 + half] = 255
    noise = torch.randint(0, 30, images.shape, generator=g, dtype=torch.uint8)
    return ImageData(images.clamp(max=225) + noise, labels)


def write_idx_mnist(root: Path, folder: str = "MNIST", n_train: int = 64, n_test: int = 32, size: int = 28) -> Path:
    """Write raw IDX files of small fake data into root/<folder>/raw (torchvision's layout)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        data = blob_images(n, size, seed=len(prefix))
        with open(raw / f"{prefix}-images-idx3-ubyte", "wb") as fh:
            fh.write(struct.pack(">IIII", 2051, n, size, size))
            fh.write(data.images.numpy().tobytes())
        with open(raw / f"{prefix}-labels-idx1-ubyte", "wb") as fh:
            fh.write(struct.pack(">II", 2049, n))
            fh.write(data.labels.to(torch.uint8).numpy().tobytes())
    return root


def tiny_config(out_dir: Path, **overrides) -> RunConfig:
    """A conditional U-Net (or the model.arch given) on 8x8 single-channel images, fast enough for many steps in a test."""
    base = {
        "run.output_dir": str(out_dir),
        "data.image_size": 8,
        "data.download": False,
        "model.unet.base_channels": 8,
        "model.unet.channel_mults": [1, 2],
        "model.unet.num_res_blocks": 1,
        "model.unet.attention_resolutions": [4],
        "model.unet.num_heads": 2,
        "train.steps": 8,
        "train.batch_size": 8,
        "train.lr": 2e-3,
        "train.warmup_steps": 2,
        "train.ema_decay": 0.9,
        "train.log_every": 2,
        "train.sample_every": 0,
        "train.checkpoint_every": 4,
        "train.keep_last": 10,
        "sample.num_steps": 4,
        "sample.num_images": 10,
    }
    if overrides.get("model.arch", "unet") != "unet":  # the U-Net's own section applies only to the U-Net
        base = {k: v for k, v in base.items() if not k.startswith("model.unet.")}
    if overrides.get("data.dataset", "mnist") == "folder":  # a folder has no download
        base.pop("data.download")
    if overrides.get("flow.objective") == "autoencoder":  # an autoencoder's grid has no sampler
        base.pop("sample.num_steps")
    base.update(overrides)
    return load_config(None, base)
