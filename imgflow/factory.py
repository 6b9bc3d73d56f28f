"""Build the model and the probability path that a run configuration describes, for its data.

Everything here reads the registries (imgflow.nn.backbones, imgflow.training.objectives): nothing
branches on a backbone's or an objective's name.
"""

from __future__ import annotations

from torch import nn

from imgflow.config import ConfigError, RunConfig
from imgflow.data import DataSpec, dataset_spec
from imgflow.model_record import ModelRecord, build_network, record_from_config
from imgflow.nn.backbones import backbone
from imgflow.training.objectives import build_path

__all__ = ["build_model", "build_path", "check_model_fits", "is_class_conditional", "model_record", "network_for"]


def is_class_conditional(cfg: RunConfig, spec: DataSpec) -> bool:
    """Whether the model takes labels: the backbone always does, or the config asks for it and the data has classes."""
    return backbone(cfg.model.arch).conditional(cfg.model.class_conditional, spec.num_classes)


def check_model_fits(cfg: RunConfig, image_size: int | None = None) -> None:
    """The backbone of cfg.model can take inputs of this size (default cfg.data.image_size; a latent run's is the
    latent side), checked before any data is read."""
    try:
        backbone(cfg.model.arch).validate(cfg.model.options, image_size or cfg.data.image_size)
    except ValueError as exc:
        raise ConfigError(f"model config does not fit the data: {exc}") from None


def model_record(cfg: RunConfig, spec: DataSpec | None = None, latent: dict | None = None) -> ModelRecord:
    """What a checkpoint of this run records for sampling (spec default: what cfg.data implies; latent: the codec's record)."""
    return record_from_config(cfg, spec or dataset_spec(cfg.data), latent)


def network_for(record: ModelRecord) -> nn.Module:
    """The untrained network a model record describes; a ConfigError when it cannot take the record's data."""
    try:
        return build_network(record)
    except ValueError as exc:
        raise ConfigError(f"model config does not fit the data: {exc}") from None


def build_model(cfg: RunConfig, spec: DataSpec | None = None) -> nn.Module:
    """The network of cfg.model for images of `spec` (default: the spec cfg.data implies).

    Channels, size and the number of classes come from the data: the label embedding has
    num_classes + 1 rows, the last one the null label of classifier-free guidance. A size the
    network cannot take is a ConfigError.
    """
    return network_for(model_record(cfg, spec))
