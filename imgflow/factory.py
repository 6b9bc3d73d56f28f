"""Build the model and the probability path that a run configuration describes, for its data."""

from __future__ import annotations

from torch import nn

from imgflow.config import ConfigError, RunConfig
from imgflow.core import GaussianPath, schedule_from_name
from imgflow.data import DataSpec, dataset_spec


def is_class_conditional(cfg: RunConfig, spec: DataSpec) -> bool:
    """Whether the model takes labels: the config asks for it and the data has classes (the lab U-Net always does)."""
    return cfg.model.arch == "lab_unet" or (cfg.model.class_conditional and spec.num_classes > 0)


def check_model_fits(cfg: RunConfig) -> None:
    """The U-Net of cfg.model can take images of cfg.data.image_size (checked before any data is read)."""
    if cfg.model.arch != "unet":
        return
    from imgflow.nn.unet import check_geometry

    try:
        check_geometry(cfg.data.image_size, cfg.model.channel_mults, cfg.model.attention_resolutions)
    except ValueError as exc:
        raise ConfigError(f"model config does not fit the data: {exc}") from None


def build_model(cfg: RunConfig, spec: DataSpec | None = None) -> nn.Module:
    """The network of cfg.model for images of `spec` (default: the spec cfg.data implies).

    Channels, size and the number of classes come from the data: the label embedding has
    num_classes + 1 rows, the last one the null label of classifier-free guidance. A size the
    network cannot halve is a ConfigError.
    """
    from imgflow.nn import LabUNet, UNet

    spec = spec or dataset_spec(cfg.data)
    m = cfg.model
    conditional = is_class_conditional(cfg, spec)
    try:
        if m.arch == "lab_unet":
            return LabUNet(
                channels=[m.base_channels * k for k in m.channel_mults],
                num_residual_layers=m.num_res_blocks,
                t_embed_dim=m.embed_dim,
                y_embed_dim=m.embed_dim,
                num_classes=max(spec.num_classes, 1),
                in_channels=spec.channels,
                image_size=spec.image_size,
            )
        return UNet(
            in_channels=spec.channels,
            image_size=spec.image_size,
            base_channels=m.base_channels,
            channel_mults=m.channel_mults,
            num_res_blocks=m.num_res_blocks,
            attention_resolutions=m.attention_resolutions,
            mid_attention=m.mid_attention,
            num_heads=m.num_heads,
            head_channels=m.head_channels or None,
            scale_shift=m.scale_shift,
            dropout=m.dropout,
            num_classes=spec.num_classes if conditional else None,
            time_embedding=m.time_embedding,
            second_time=None if m.second_time == "none" else m.second_time,
            time_scale=m.time_scale,
        )
    except ValueError as exc:
        raise ConfigError(f"model config does not fit the data: {exc}") from None


def build_path(cfg: RunConfig) -> GaussianPath:
    """x_t = alpha_t data + beta_t noise with the configured schedule ('linear' is the linear path)."""
    return GaussianPath(schedule_from_name(cfg.flow.schedule))
