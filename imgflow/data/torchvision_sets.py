"""Datasets torchvision ships: one registry entry each, loaded once into a uint8 (N, C, H, W) tensor."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from imgflow.data.images import ImageData
from imgflow.data.spec import DataSpec

_IDX = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DatasetNotFoundError(FileNotFoundError):
    """The dataset is not on disk and could not be downloaded."""


@dataclass
class TorchvisionOptions:
    """[data.<torchvision dataset>]: no keys of their own (data_root, resize and download are [data] keys)."""


@dataclass(frozen=True)
class TorchvisionDataset:
    """A dataset of torchvision.datasets, and the facts the pipeline needs about it.

    name: the data.dataset value; torchvision_class: the class in torchvision.datasets;
    folder / files: where its raw files live under data.data_root (named in the offline
    message); native_size: H = W of its images; class_names: None to take them from the loaded
    dataset (e.g. CIFAR-100's meta file); split_argument: SVHN-style split="train"/"test"
    instead of train=True/False; flippable: a horizontal flip keeps the class (objects, not
    digits or letters).
    """

    name: str
    torchvision_class: str
    folder: str
    files: tuple[str, ...]
    channels: int
    native_size: int
    num_classes: int
    class_names: tuple[str, ...] | None = None
    split_argument: bool = False
    flippable: bool = False

    options: ClassVar[type] = TorchvisionOptions
    #: keys that only say where the files live (resume and classifiers ignore them)
    location_keys: ClassVar[tuple[str, ...]] = ("data_root", "download")
    unused_keys: ClassVar[dict[str, str]] = {}

    # --- the data-source interface (imgflow.data.DATASETS) --------------------------------------
    def validate(self, data: Any, options: Any) -> None:
        """ValueError for settings this dataset cannot satisfy (one line naming the key and the fix)."""
        if data.hflip and not self.flippable:
            raise ValueError(f"data.hflip = true would mirror {self.name} images into other symbols; set it false")

    def spec(self, data: Any = None, class_names: tuple[str, ...] | None = None) -> DataSpec:
        """The spec of the data at data.image_size (an int also works; None: the native size)."""
        image_size = data if isinstance(data, int) or data is None else data.image_size
        names = class_names or self.class_names or tuple(str(i) for i in range(self.num_classes))
        return DataSpec(self.name, self.channels, image_size or self.native_size, tuple(names))

    def identity(self, data: Any) -> dict[str, str]:
        """What decides the pixels and labels (not where the files live)."""
        identity = {"dataset": self.name, "image_size": str(data.image_size)}
        if data.image_size != self.native_size:  # at the native size nothing is padded or resized
            identity["resize"] = str(bool(data.resize))
        return identity

    def load_split(self, data: Any, split: str = "train", progress: bool = False,
                   log: Callable[[str], None] | None = None) -> ImageData:
        """The split of a [data] section's dataset (progress and log: nothing to report, the files are read at once)."""
        return self.load(data.data_root, split, data.image_size, data.resize, data.download)

    def missing_message(self, root: Path) -> str:
        where = root / self.folder if self.folder else root
        holder = f"the folder that holds {self.folder.split('/')[0]}" if self.folder else "the folder that holds them"
        return (
            f"{self.name} is not in {where} and could not be downloaded (offline?): put the files "
            f"{', '.join(self.files)} in {where} (or set data.data_root to {holder})"
        )

    def open(self, root: Path, split: str, download: bool):
        """The torchvision dataset object of a split ('train' or 'test')."""
        import torchvision

        cls = getattr(torchvision.datasets, self.torchvision_class)
        kwargs = {"split": split} if self.split_argument else {"train": split == "train"}

        def make(dl: bool):
            return cls(str(root), download=dl, **kwargs)

        try:
            return make(False)
        except RuntimeError:
            if not download:
                raise DatasetNotFoundError(self.missing_message(root)) from None
            try:
                return make(True)
            except Exception:
                raise DatasetNotFoundError(self.missing_message(root)) from None
        except Exception as exc:
            raise DatasetNotFoundError(
                f"{self.name} files in {root / self.folder if self.folder else root} could not be read ({type(exc).__name__}: {exc}); "
                "replace them with intact copies"
            ) from None

    def load(self, root: str | Path, split: str = "train", image_size: int | None = None, resize: bool = False,
             download: bool = True) -> ImageData:
        """The split as uint8 (N, C, H, W), padded (or resized) to image_size."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        ds = self.open(Path(root), split, download)
        data = torch.as_tensor(np.asarray(ds.data))
        if data.dim() == 3:  # MNIST-like (N, H, W)
            images = data.unsqueeze(1)
        elif data.shape[1] == self.channels and data.shape[-1] != self.channels:  # SVHN is already (N, C, H, W)
            images = data
        else:  # CIFAR is (N, H, W, C)
            images = data.permute(0, 3, 1, 2)
        raw_labels = getattr(ds, "targets", None)
        if raw_labels is None:
            raw_labels = ds.labels
        labels = torch.as_tensor(np.asarray(raw_labels), dtype=torch.long)
        images = fit_size(images.contiguous(), image_size or images.shape[-1], resize)
        names = tuple(getattr(ds, "classes", None) or ()) or None
        if names is not None and len(names) != self.num_classes:
            names = None
        return ImageData(images, labels, self.spec(images.shape[-1], names))


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


_CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
_MNIST_CLASSES = tuple(f"{i} - {w}" for i, w in enumerate(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]))
_FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

TORCHVISION_DATASETS: dict[str, TorchvisionDataset] = {
    entry.name: entry
    for entry in (
        TorchvisionDataset("mnist", "MNIST", "MNIST/raw", _IDX, 1, 28, 10, _MNIST_CLASSES),
        TorchvisionDataset("fashion_mnist", "FashionMNIST", "FashionMNIST/raw", _IDX, 1, 28, 10, _FASHION_CLASSES),
        TorchvisionDataset(
            "cifar10", "CIFAR10", "cifar-10-batches-py",
            ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta"),
            3, 32, 10, _CIFAR10_CLASSES, flippable=True,
        ),
        TorchvisionDataset("cifar100", "CIFAR100", "cifar-100-python", ("train", "test", "meta"), 3, 32, 100, flippable=True),
        TorchvisionDataset("svhn", "SVHN", "", ("train_32x32.mat", "test_32x32.mat"), 3, 32, 10,
                           tuple(str(i) for i in range(10)), split_argument=True),
    )
}
