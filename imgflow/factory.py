"""Build the model and the probability path that a run configuration describes."""

from __future__ import annotations

from torch import nn

from imgflow.config import ConfigError, RunConfig
from imgflow.core import GaussianPath, schedule_from_name
from imgflow.data import CHANNELS, NUM_CLASSES


def build_model(cfg: RunConfig) -> nn.Module:
    """The network of cfg.model for cfg.data's images; a size it cannot divide is a ConfigError."""
    from imgflow.nn import LabUNet, UNet

    m, d = cfg.model, cfg.data
    try:
        if m.arch == "lab_unet":
            return LabUNet(
                channels=[m.base_channels * k for k in m.channel_mults],
                num_residual_layers=m.num_res_blocks,
                t_embed_dim=m.embed_dim,
                y_embed_dim=m.embed_dim,
                num_classes=NUM_CLASSES,
                in_channels=CHANNELS[d.dataset],
                image_size=d.image_size,
            )
        return UNet(
            in_channels=CHANNELS[d.dataset],
            image_size=d.image_size,
            base_channels=m.base_channels,
            channel_mults=m.channel_mults,
            num_res_blocks=m.num_res_blocks,
            attention_resolutions=m.attention_resolutions,
            mid_attention=m.mid_attention,
            num_heads=m.num_heads,
            dropout=m.dropout,
            num_classes=NUM_CLASSES if m.class_conditional else None,
            time_embedding=m.time_embedding,
        )
    except ValueError as exc:
        raise ConfigError(f"model config does not fit the data: {exc}") from None


def is_class_conditional(cfg: RunConfig) -> bool:
    """Whether the model takes labels (the lab U-Net always does)."""
    return cfg.model.class_conditional or cfg.model.arch == "lab_unet"


def build_path(cfg: RunConfig) -> GaussianPath:
    """x_t = alpha_t z + beta_t eps with the configured schedule ('linear' is the linear path)."""
    return GaussianPath(schedule_from_name(cfg.flow.schedule))
