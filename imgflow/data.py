"""Image datasets held in memory as one uint8 tensor, with deterministic batches.

MNIST, Fashion-MNIST and CIFAR-10 come from torchvision (downloaded where a network exists)
and are converted once to a (N, C, H, W) uint8 tensor; a batch is an index into it, scaled
to [-1, 1] on the fly, so no per-item PIL work happens on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from imgflow.seeding import generator

#: dataset name -> (torchvision class name, folder under data_root, files it needs)
DATASETS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "mnist": ("MNIST", "MNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "fashion_mnist": ("FashionMNIST", "FashionMNIST/raw", ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")),
}

NUM_CLASSES = 10
CHANNELS = {"mnist": 1, "fashion_mnist": 1, "cifar10": 3}
NATIVE_SIZE = {"mnist": 28, "fashion_mnist": 28, "cifar10": 32}


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not on disk and could not be downloaded."""


@dataclass
class ImageData:
    """images: (N, C, H, W) uint8; labels: (N,) int64 in [0, num_classes)."""

    images: Tensor
    labels: Tensor
    num_classes: int = NUM_CLASSES

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def to(self, device: torch.device | str) -> "ImageData":
        return ImageData(self.images.to(device), self.labels.to(device), self.num_classes)

    def batch(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        """(x in [-1, 1] float32 (b, C, H, W), y (b,)) for the given indices."""
        x = self.images[indices].float().div_(127.5).sub_(1.0)
        return x, self.labels[indices]


def _missing_message(name: str, root: Path) -> str:
    _, folder, files = DATASETS[name]
    return (
        f"{name} is not in {root / folder} and could not be downloaded (offline?): put the files "
        f"{', '.join(files)} in {root / folder} (or set data.data_root to the folder that holds {folder.split('/')[0]})"
    )


def load_image_data(
    name: str,
    root: str | Path,
    train: bool = True,
    image_size: int | None = None,
    resize: bool = False,
    download: bool = True,
) -> ImageData:
    """Load a torchvision dataset split into memory as uint8 (N, C, H, W).

    image_size larger than the native size pads with background (zeros, i.e. -1 after
    scaling) or, with resize=True, resizes bilinearly; smaller sizes need resize=True.
    """
    import torchvision

    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    root = Path(root)
    cls = getattr(torchvision.datasets, DATASETS[name][0])
    try:
        ds = cls(str(root), train=train, download=False)
    except RuntimeError:
        if not download:
            raise DatasetNotFoundError(_missing_message(name, root)) from None
        try:
            ds = cls(str(root), train=train, download=True)
        except Exception:  # noqa: BLE001 - any download failure means the same thing to the user
            raise DatasetNotFoundError(_missing_message(name, root)) from None
    except Exception as exc:  # noqa: BLE001 - torchvision asserts on malformed files
        raise DatasetNotFoundError(f"{name} files in {root / DATASETS[name][1]} could not be read ({type(exc).__name__}: {exc}); replace them with intact copies") from None

    data = torch.as_tensor(ds.data)
    images = data.unsqueeze(1) if data.dim() == 3 else data.permute(0, 3, 1, 2)  # CIFAR is NHWC
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    images = fit_size(images.contiguous(), image_size or images.shape[-1], resize)
    return ImageData(images, labels)


def fit_size(images: Tensor, size: int, resize: bool) -> Tensor:
    """Pad (centred, with zeros) or bilinearly resize uint8 (N, C, H, W) images to size x size."""
    h = images.shape[-1]
    if size == h:
        return images
    if resize:
        out = F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=size < h)
        return out.round_().clamp_(0, 255).to(torch.uint8)
    if size < h:
        raise ValueError(f"image_size {size} is smaller than the native {h}; set data.resize = true to shrink")
    lo = (size - h) // 2
    return F.pad(images, (lo, size - h - lo, lo, size - h - lo))


class BatchSchedule:
    """Which dataset indices make the global batch of each step, as a pure function of (seed, step).

    Every epoch is a fresh permutation seeded by (seed, epoch); the last partial batch of
    an epoch is dropped. Resuming at step k therefore sees exactly the batches an
    uninterrupted run would, with no sampler state to save.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int) -> None:
        if batch_size > num_items:
            raise ValueError(f"batch size {batch_size} is larger than the dataset ({num_items} images); lower train.batch_size")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.batches_per_epoch = num_items // batch_size
        self._epoch = -1
        self._perm: Tensor | None = None

    def indices(self, step: int) -> Tensor:
        """The (batch_size,) indices of step `step` (0-based)."""
        epoch, j = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._perm = torch.randperm(self.num_items, generator=generator(self.seed, "epoch", epoch))
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[j * self.batch_size : (j + 1) * self.batch_size]
