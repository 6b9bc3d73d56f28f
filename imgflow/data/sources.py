"""The data-source registry (`data.dataset`): the protocol every source follows, and `DATASETS`.

A data source has
- `name` and `options`: the dataclass of its own section [data.<name>] (a folder's path, channels, fit, ...);
- `validate(data, options)`: a ValueError naming the key and the fix for settings it cannot satisfy;
- `spec(data)`: channels, size and class names without loading (None when only loading tells);
- `identity(data)`: what decides the pixels and labels (resume and cached statistics compare it);
- `load_split(data, split, progress, log)`: the 'train' or 'test' split as `ImageData`;
- `location_keys`: the [data] keys that only say where the files live;
- `unused_keys`: {'section.key': why} for the [data] keys it does not read (a config that sets one is refused).

This module is a leaf: the project's sources (torchvision's datasets, image folders) are registered where the
data layer is assembled, imgflow/data/__init__.py; a new source is one module and one `register_dataset` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from imgflow.core.registry import Registry


class DataSource(Protocol):
    name: str
    options: type
    location_keys: tuple[str, ...]
    unused_keys: dict[str, str]

    def validate(self, data: Any, options: Any) -> None: ...

    def spec(self, data: Any) -> Any: ...

    def identity(self, data: Any) -> dict[str, str]: ...

    def load_split(self, data: Any, split: str = "train", progress: bool = False, log: Callable[[str], None] | None = None) -> Any: ...


#: every data.dataset value: your own folder of images, and torchvision's datasets
DATASETS: Registry[DataSource] = Registry("dataset", "data.dataset")


def register_dataset(source: DataSource, *, replace: bool = False) -> DataSource:
    """Add a data source (data.dataset = source.name); its options dataclass becomes [data.<name>]."""
    return DATASETS.register(source.name, source, replace=replace)


def dataset_entry(name: str) -> DataSource:
    """The source of data.dataset = name (an UnknownNameError, a ValueError, listing the names)."""
    return DATASETS[name]


__all__ = ["DATASETS", "DataSource", "dataset_entry", "register_dataset"]
