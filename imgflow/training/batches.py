"""The batch of every training step as a pure function of (seed, step): what makes resume exact.

The global batch of step k (its data rows, times, noise, dropped labels and flips) is drawn
from generators seeded by (seed, k); each process takes its slice of it. A run therefore
resumes bit-exactly from a checkpoint that stores only weights, optimiser/scheduler state and
k, and N processes see the same samples as one process at the same global batch size. Nothing
here needs accelerate or a model: tests call these functions directly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from imgflow.data import ImageData
from imgflow.nn.embeddings import apply_label_drop, label_drop_mask
from imgflow.objectives.base import MicroBatch
from imgflow.seeding import generator

#: draws (times t, second times r or None) for n samples from a generator on a device
TimeDraw = Callable[[int, torch.Generator, torch.device], tuple[Tensor, Tensor | None]]


class BatchSchedule:
    """Which dataset rows make the global batch of each step, as a pure function of (seed, step).

    Every epoch is a fresh permutation seeded by (seed, epoch); the last partial batch of an
    epoch is dropped. The permutation is drawn on the CPU (the same on every machine) and kept
    on `device`, so a step's rows need no host-to-device copy.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, device: torch.device | str = "cpu") -> None:
        if batch_size > num_items:
            raise ValueError(f"batch size {batch_size} is larger than the dataset ({num_items} images); lower train.batch_size")
        self.num_items = num_items
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        self.batches_per_epoch = num_items // batch_size
        self._epoch = -1
        self._perm: Tensor | None = None

    def permutation(self, epoch: int) -> Tensor:
        """The (num_items,) order of epoch `epoch`."""
        return torch.randperm(self.num_items, generator=generator(self.seed, "epoch", epoch))

    def indices(self, step: int) -> Tensor:
        """The (batch_size,) rows of step `step` (0-based), on `device`."""
        epoch, j = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._perm = self.permutation(epoch).to(self.device)
            self._epoch = epoch
        assert self._perm is not None
        return self._perm[j * self.batch_size : (j + 1) * self.batch_size]


@dataclass
class GlobalBatch:
    """Every random choice of one optimiser step, for all processes and micro-batches together."""

    step: int
    indices: Tensor  # (B,) dataset rows
    times: Tensor  # (B,) t
    noise: Tensor  # (B, C, H, W)
    drop_label: Tensor  # (B,) bool: the label becomes the null label (classifier-free guidance)
    flip: Tensor  # (B,) bool: mirrored left-right when data.hflip
    second_times: Tensor | None = None  # (B,) r of a flow-map objective, None otherwise


def draw_global_batch(step: int, *, seed: int, schedule: BatchSchedule, image_shape: tuple[int, ...], draw_times: TimeDraw,
                      label_dropout: float, device: torch.device | str) -> GlobalBatch:
    """The global batch of `step`: every draw from one generator seeded by (seed, 'step', step) on `device`."""
    device = torch.device(device)
    b = schedule.batch_size
    gen = generator(seed, "step", step, device=device)
    times, second = draw_times(b, gen, device)
    noise = torch.randn((b, *image_shape), generator=gen, device=device)
    drop = label_drop_mask(b, label_dropout, generator=gen, device=device)
    flip = torch.rand(b, generator=gen, device=device) < 0.5
    return GlobalBatch(step, schedule.indices(step), times, noise, drop, flip, second)


def micro_batch_rows(micro_index: int, world: int, rank: int, micro_size: int) -> slice:
    """Rows of the global batch that process `rank` uses for micro-batch `micro_index`.

    The global batch is laid out micro-batch by micro-batch, each split across processes, so
    one process with accumulation and N processes without see the same samples per update.
    """
    lo = (micro_index * world + rank) * micro_size
    return slice(lo, lo + micro_size)


def assemble_micro_batch(batch: GlobalBatch, rows: slice, data: ImageData, *, hflip: bool, null_label: int | None,
                         channels_last: bool = False, device: torch.device | str | None = None) -> MicroBatch:
    """The rows `rows` of a global batch as model inputs: pixels in [-1, 1], flips, dropped labels.

    null_label: the label index that means "no class" (num_classes), or None for an unconditional model.
    """
    x, y = data.batch(batch.indices[rows], device)
    if hflip:
        x = torch.where(batch.flip[rows, None, None, None], x.flip(-1), x)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    labels = None
    if null_label is not None:
        if y is None:
            raise ValueError("a class-conditional model needs labelled data")
        labels = apply_label_drop(y, batch.drop_label[rows], null_label)
    second = batch.second_times[rows] if batch.second_times is not None else None
    return MicroBatch(x, batch.times[rows], batch.noise[rows], labels, second, batch.step, rows.start or 0)
