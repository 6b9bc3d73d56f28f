"""What one training step minimises, per sample: the config's loss on a `MicroBatch`.

An objective draws the times of a global batch (`draw_times`) and turns a micro-batch into two
(b,) per-sample tensors: the loss whose mean the gradient comes from, and the error the metrics
log keeps by time bin (the same tensor for flow matching; MeanFlow logs its squared error before
the adaptive weighting, which would make every sample's loss about 1). The math itself lives in
imgflow.core (losses, mean_flow).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from imgflow.config import RunConfig
from imgflow.core import LOSSES, sample_times
from imgflow.core.mean_flow import Guidance, mean_flow_loss, sample_time_pairs
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

    def per_sample_loss(self, forward: Forward, batch: MicroBatch, **_: object) -> tuple[Tensor, Tensor]:
        kwargs = {"y": batch.labels} if batch.labels is not None else {}
        loss = self.loss_fn(forward, self.path, batch.data, batch.times, noise=batch.noise, model_kwargs=kwargs,
                            reduction=self.cfg.flow.loss_reduction, per_sample=True)
        return loss, loss.detach()


class MeanFlowObjective:
    """MeanFlow (imgflow.core.mean_flow) on a flow-map U-Net: (t, r) pairs, a JVP target, guidance folded in.

    The prediction goes through the (possibly DistributedDataParallel) wrapper that carries the
    gradient synchronisation; the JVP that builds the stop-gradient target runs on the bare module.
    """

    def __init__(self, cfg: RunConfig, null_label: int | None) -> None:
        self.cfg = cfg
        self.path = build_path(cfg)
        f = cfg.flow
        self.guidance = Guidance(f.mean_flow_guidance, f.mean_flow_guidance_mix, null_label) if null_label is not None else None

    def draw_times(self, n: int, gen: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor | None]:
        f = self.cfg.flow
        return sample_time_pairs(n, mean=f.mean_flow_time_mean, std=f.mean_flow_time_std, equal_fraction=f.mean_flow_equal_fraction,
                                 generator=gen, device=device)

    def per_sample_loss(self, forward: Forward, batch: MicroBatch, *, model: torch.nn.Module | None = None,
                        accelerator=None, **_: object) -> tuple[Tensor, Tensor]:
        bare = accelerator.unwrap_model(model) if accelerator is not None and model is not None else forward
        kwargs = {"y": batch.labels} if batch.labels is not None else {}
        return mean_flow_loss(forward, self.path, batch.data, batch.times, batch.second_times, noise=batch.noise, model_kwargs=kwargs,
                              target_model=bare, guidance=self.guidance, reduction=self.cfg.flow.loss_reduction,
                              adaptive_p=self.cfg.flow.mean_flow_adaptive_p, per_sample=True)


def build_objective(cfg: RunConfig, null_label: int | None = None) -> FlowMatchingObjective | MeanFlowObjective:
    """The objective of cfg.flow (null_label: the label meaning "no class", None for unconditional models)."""
    if cfg.flow.objective == "mean_flow":
        return MeanFlowObjective(cfg, null_label)
    return FlowMatchingObjective(cfg)
