"""Datasets as data sources behind one interface, all ending up as one (N, C, H, W) `ImageData`.

A data source (an entry of `DATASETS`, selected by data.dataset) follows the protocol of
imgflow.data.sources; the project's sources are registered here.

A folder of your own images (imgflow.data.folder) is converted once into a memory-mapped cache;
torchvision's datasets (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN) are loaded into memory. A batch is
an index into the array, scaled on the fly, so no per-item work happens on the hot path. Shapes and
class names come from the data (`DataSpec`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imgflow.data.folder import DataError, FolderDataset, FolderOptions, export_image_folder, scan_folder
from imgflow.data.images import ImageData, to_model_input, to_unit_range
from imgflow.data.sources import DATASETS, DataSource, dataset_entry, register_dataset
from imgflow.data.spec import DataSpec, UnknownClassError
from imgflow.data.torchvision_sets import TORCHVISION_DATASETS, DatasetNotFoundError, TorchvisionDataset, fit_size

for _source in (FolderDataset(), *TORCHVISION_DATASETS.values()):
    register_dataset(_source)


def load_image_data(
    name: str,
    root: str | Path,
    train: bool = True,
    image_size: int | None = None,
    resize: bool = False,
    download: bool = True,
) -> ImageData:
    """A torchvision dataset's train (or test) split as uint8 (N, C, H, W) in memory.

    image_size larger than the native size pads with background (zeros, i.e. -1 after
    scaling) or, with resize=True, resizes bilinearly; smaller sizes need resize=True.
    """
    entry = dataset_entry(name)
    if name not in TORCHVISION_DATASETS:
        raise ValueError(f"{name} is not a torchvision dataset; load it with load_dataset(cfg.data)")
    return entry.load(root, "train" if train else "test", image_size, resize, download)


def load_dataset(data: Any, split: str = "train", progress: bool = False, log: Any = None) -> ImageData:
    """The split ('train', or 'test': the held-out images) of the dataset a config's [data] section describes."""
    return dataset_entry(data.dataset).load_split(data, split, progress=progress, log=log)


def data_identity(data: Any) -> dict[str, str]:
    """What decides the pixels and labels a config's [data] section yields (not where the files live).

    Classifiers and cached reference statistics are keyed by it.
    """
    return dataset_entry(data.dataset).identity(data)


def dataset_spec(data: Any) -> DataSpec:
    """The spec a config's [data] section implies without loading anything (fixed releases only).

    Checkpoints store the spec of the data they were trained on; this is the fallback for
    checkpoints written before they did.
    """
    spec = dataset_entry(data.dataset).spec(data)
    if spec is None:
        raise ValueError(f"the shape of a {data.dataset} dataset is known only once it is loaded")
    return spec


__all__ = [
    "DATASETS",
    "DataError",
    "DataSource",
    "DataSpec",
    "DatasetNotFoundError",
    "FolderOptions",
    "ImageData",
    "TorchvisionDataset",
    "UnknownClassError",
    "data_identity",
    "dataset_entry",
    "dataset_spec",
    "export_image_folder",
    "fit_size",
    "load_dataset",
    "load_image_data",
    "register_dataset",
    "scan_folder",
    "to_model_input",
    "to_unit_range",
]
