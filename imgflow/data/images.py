"""A dataset as one (N, C, H, W) array with labels: uint8 pixels or float values (latents), resident or memory-mapped."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from imgflow.data.spec import DataSpec


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 pixels 0..255 -> float32 in [-1, 1] (x = k / 127.5 - 1), the scaling every model sees."""
    return images.float().div_(127.5).sub_(1.0)


def to_model_input(values: Tensor) -> Tensor:
    """What a model sees of stored rows: uint8 pixels scaled to [-1, 1]; float values (e.g. latents) as float32, unscaled."""
    return to_unit_range(values) if values.dtype == torch.uint8 else values.float()


@dataclass
class ImageData:
    """images: (N, C, H, W) uint8 pixels or floats (float16/bfloat16/float32/float64, e.g. encoded latents);
    labels: (N,) int64 in [0, num_classes), or None for unlabelled data. A batch is uint8 scaled to [-1, 1]
    or floats as stored, in float32 (`to_model_input`).

    `spec` describes the data (channels, size, class names). When `images` is memory-mapped
    (`resident=False`), batches are gathered on the CPU and only they move to the device, so a
    dataset larger than memory trains the same way.
    """

    images: Tensor
    labels: Tensor | None
    spec: DataSpec = None  # type: ignore[assignment]
    resident: bool = True
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dim() != 4 or not (self.images.dtype == torch.uint8 or self.images.dtype.is_floating_point):
            raise ValueError(f"images must be a uint8 or floating (N, C, H, W) tensor, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.labels.shape[0]} labels for {self.images.shape[0]} images")
        if self.spec is None:
            n_cls = int(self.labels.max()) + 1 if self.labels is not None and self.labels.numel() else 0
            channels, size = self.images.shape[1], self.images.shape[2]
            self.spec = DataSpec("tensors", channels, size, tuple(str(i) for i in range(n_cls)))

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return self.spec.num_classes

    def to(self, device: torch.device | str) -> ImageData:
        """Resident data moves to the device; memory-mapped data stays where it is."""
        if not self.resident:
            return self
        labels = self.labels.to(device) if self.labels is not None else None
        return ImageData(self.images.to(device), labels, self.spec, True, self.info)

    def subset(self, indices: Tensor) -> ImageData:
        """A resident copy of the given rows."""
        labels = self.labels[indices] if self.labels is not None else None
        return ImageData(self.images[indices], labels, self.spec, True, self.info)

    def batch(self, indices: Tensor, device: torch.device | str | None = None) -> tuple[Tensor, Tensor | None]:
        """(x in [-1, 1] float32 (b, C, H, W), labels (b,) or None) for the given indices, on `device`.

        Memory-mapped images are gathered on the CPU (indices moved there) and copied over.
        """
        device = torch.device(device) if device is not None else self.images.device
        if not self.resident:
            cpu_idx = indices.cpu()
            pixels = self.images[cpu_idx]
            labels = self.labels[cpu_idx] if self.labels is not None else None
            if device.type == "cuda":
                pixels = pixels.pin_memory()
            pixels = pixels.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True) if labels is not None else None
            return to_model_input(pixels), labels
        labels = self.labels[indices] if self.labels is not None else None
        return to_model_input(self.images[indices]), labels
