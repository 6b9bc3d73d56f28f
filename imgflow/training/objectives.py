"""What one training step minimises, per sample: the config's loss on a `MicroBatch`.

An objective draws the times of a global batch (`draw_times`) and turns a micro-batch into
(b,) per-sample losses; the trainer averages them for the gradient and keeps them by time
bin for the metrics log. The math itself lives in imgflow.core.losses.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.config import RunConfig
from imgflow.core import LOSSES, sample_times
from imgflow.factory import build_path
from imgflow.training.batches import MicroBatch

Forward = Callable[..., Tensor]


class FlowMatchingObjective:
    """The loss of flow.prediction (velocity: flow matching; noise: noise prediction) at t ~ flow.time_sampling."""

    def __init__(self, cfg: RunConfig) -> None:
        self.cfg = cfg
        self.path = build_path(cfg)
        self.loss_fn = LOSSES[cfg.flow.prediction]

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        f = self.cfg.flow
        return sample_times(n, f.time_sampling, mean=f.logit_normal_mean, std=f.logit_normal_std, generator=gen, device=device), None

    def per_sample_loss(self, forward: Forward, batch: MicroBatch, **_: object) -> Tensor:
        kwargs = {"y": batch.labels} if batch.labels is not None else {}
        return self.loss_fn(forward, self.path, batch.data, batch.times, noise=batch.noise, model_kwargs=kwargs,
                            reduction=self.cfg.flow.loss_reduction, per_sample=True)


def build_objective(cfg: RunConfig) -> FlowMatchingObjective:
    """The objective of cfg.flow."""
    return FlowMatchingObjective(cfg)
