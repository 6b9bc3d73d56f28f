"""Flow matching (a velocity model) and noise prediction: the loss of flow.prediction at t ~ the configured times."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from imgflow.core import LOSSES, TIME_SAMPLINGS, sample_times
from imgflow.objectives.base import FlowSettings, MicroBatch, ObjectiveEntry


def model_kwargs(batch: MicroBatch) -> dict[str, Tensor]:
    """The labels of a batch as the network's keyword (none for an unconditional model)."""
    return {"y": batch.labels} if batch.labels is not None else {}


@dataclass
class FlowMatchingOptions:
    """[flow.flow_matching]: the training times, t ~ `time_sampling` (imgflow.core.TIME_SAMPLINGS: "uniform", or
    "logit_normal" = sigmoid(N(logit_normal_mean, logit_normal_std)), which spends more training on the middle times)."""

    time_sampling: str = "uniform"
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0

    def validate(self) -> None:
        if self.time_sampling not in TIME_SAMPLINGS:
            raise ValueError(f"time_sampling = {self.time_sampling!r} is not one of: {', '.join(TIME_SAMPLINGS)}")
        if not self.logit_normal_std > 0:
            raise ValueError(f"logit_normal_std must be > 0, got {self.logit_normal_std}")


class FlowMatchingObjective:
    """The loss of flow.prediction (velocity: flow matching; noise: noise prediction) at t ~ time_sampling."""

    def __init__(self, flow: FlowSettings, options: FlowMatchingOptions, null_label: int | None) -> None:
        self.flow = flow
        self.options = options
        self.path = flow.path()
        self.loss_fn = LOSSES[flow.prediction]

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        o = self.options
        return sample_times(n, o.time_sampling, mean=o.logit_normal_mean, std=o.logit_normal_std, generator=gen, device=device), None

    def per_sample_loss(self, model: Callable[..., Tensor], batch: MicroBatch) -> tuple[Tensor, Tensor]:
        loss = self.loss_fn(model, self.path, batch.data, batch.times, noise=batch.noise, model_kwargs=model_kwargs(batch),
                            reduction=self.flow.loss_reduction, per_sample=True)
        return loss, loss.detach()


FLOW_MATCHING = ObjectiveEntry("flow_matching", FlowMatchingOptions, FlowMatchingObjective)
