"""What a model needs to know about its data: channels, size, classes (and their names).

A `DataSpec` comes from the data itself (a loaded dataset or a scanned image folder) and
travels into the model config and every checkpoint, so sampling needs no dataset and nothing
downstream assumes one channel or ten classes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


class UnknownClassError(ValueError):
    """A class given by name or index that the data does not have."""


@dataclass(frozen=True)
class DataSpec:
    """Shape and classes of a dataset.

    dataset: the registry name ("mnist", "folder", ...); channels: 1 or 3; image_size: H = W;
    class_names: one name per label 0..K-1 (empty for unlabelled data, which trains
    unconditional models); fingerprint: a digest of the files a folder dataset was built from
    ("" for fixed releases), which resuming compares.
    """

    dataset: str
    channels: int
    image_size: int
    class_names: tuple[str, ...] = ()
    fingerprint: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        return (self.channels, self.image_size, self.image_size)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> DataSpec:
        raw = json.loads(text)
        raw["class_names"] = tuple(raw.get("class_names", ()))
        return cls(**raw)

    def label_of(self, cls_: int | str) -> int:
        """The label index of a class given as an index (int or digit string) or a name (case-insensitive)."""
        if not self.class_names:
            raise UnknownClassError(f"the {self.dataset} data has no classes (an unconditional model); leave the classes out")
        if isinstance(cls_, str) and cls_.strip().lstrip("-").isdigit():
            cls_ = int(cls_)
        if isinstance(cls_, int):
            if 0 <= cls_ < self.num_classes:
                return cls_
            raise UnknownClassError(f"class index {cls_} is outside 0..{self.num_classes - 1} of the {self.dataset} data")
        lowered = [n.lower() for n in self.class_names]
        name = cls_.strip().lower()
        if name in lowered:
            return lowered.index(name)
        shown = ", ".join(self.class_names[:12]) + (", ..." if self.num_classes > 12 else "")
        raise UnknownClassError(f"unknown class {cls_!r}; the {self.dataset} classes are {shown} (or indices 0..{self.num_classes - 1})")

    def labels_of(self, classes: Sequence[int | str]) -> list[int]:
        return [self.label_of(c) for c in classes]
