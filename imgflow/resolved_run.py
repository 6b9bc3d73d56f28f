"""A run resolved once: from a `RunConfig` to the plain pieces that training, sampling and the experiments use.

    run = resolve_run(cfg)            # or resolve_run(cfg, data=my_images)
    run.data, run.codec               # what the network trains on (pixels, or latents and their codec)
    run.record, run.network           # what a checkpoint records about the model; the network, initialised
    run.objective, run.entry          # the loss of one step; what it logs and how its preview grid is drawn
    run.teacher                       # the loaded teacher of a distilling objective (None for the others)

Everything is read from the registries (backbones, objectives, data sources, solvers): nothing here
branches on an entry's name. `check_run` does the part that needs no data (the config, the autoencoder
of a latent run, whether the backbone takes inputs of the size it will see), so a caller can check a run
before it converts a folder or writes anything; `resolve_run` does the rest.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from imgflow.config import ConfigError, RunConfig, validate
from imgflow.data import DataSpec, ImageData, dataset_spec
from imgflow.latents import LatentCodec, check_codec_size, encode_data, latent_image_size, load_autoencoder, load_training_data
from imgflow.model_record import ModelRecord, build_network, record_from_config
from imgflow.nn.backbones import BACKBONES
from imgflow.objectives import OBJECTIVES, Objective, ObjectiveEntry
from imgflow.objectives.base import TeacherNetwork
from imgflow.seeding import derive_seed
from imgflow.teacher import endpoint_pairs, load_teacher


@dataclass
class ResolvedRun:
    """The pieces of one run (see the module docstring). `network` holds the weights the run starts from (the seeded
    initialisation; a trainer may then load a checkpoint or `train.init_from` into it)."""

    cfg: RunConfig
    data: ImageData
    codec: LatentCodec | None
    record: ModelRecord
    network: nn.Module
    objective: Objective
    entry: ObjectiveEntry
    teacher: TeacherNetwork | None = None
    setup_seconds: float = 0.0  # work done for the run before its first step that its time budget counts (endpoint pairs built)

    @property
    def starts_from_teacher(self) -> bool:
        """Whether a fresh run loads the teacher's weights into the student (the objective's init_from_teacher)."""
        starts = self.entry.starts_from_teacher
        return self.teacher is not None and starts is not None and starts(self.cfg.flow.options)

    @property
    def spec(self) -> DataSpec:
        """The spec of the training rows (for a latent run, of the latents)."""
        return self.data.spec

    @property
    def null_label(self) -> int | None:
        return self.record.null_label


def check_model_fits(cfg: RunConfig, image_size: int | None = None) -> None:
    """The backbone of cfg.model can take inputs of this side (default data.image_size; a latent run's is the latent side)."""
    try:
        BACKBONES[cfg.model.arch].validate(cfg.model.options, image_size or cfg.data.image_size)
    except ValueError as exc:
        raise ConfigError(f"model config does not fit the data: {exc}") from None


def check_run(cfg: RunConfig, device: torch.device | str = "cpu") -> LatentCodec | None:
    """What can be checked before any data is read: the config itself (again: a caller may have changed it in Python),
    a latent run's autoencoder (loaded: the codec, returned) and its image size, and the backbone's fit."""
    validate(cfg)
    codec = None
    if cfg.data.autoencoder:
        codec = load_autoencoder(cfg.data.autoencoder, device, image_size=cfg.data.image_size)
        check_codec_size(codec, cfg.data.image_size, cfg.data.autoencoder)
    check_model_fits(cfg, latent_image_size(cfg.data, codec))
    return codec


def network_for(record: ModelRecord) -> nn.Module:
    """The untrained network a model record describes; a ConfigError when it cannot take the record's data."""
    try:
        return build_network(record)
    except ValueError as exc:
        raise ConfigError(f"model config does not fit the data: {exc}") from None


def check_labels(cfg: RunConfig, record: ModelRecord, entry: ObjectiveEntry) -> None:
    """Guidance needs labels: refused for a model that has none (data without classes)."""
    if record.conditional:
        return
    what = "the data has no classes" if record.spec.num_classes == 0 else "the model takes no labels"
    fix = " (put a folder's images in one sub-folder per class)" if record.spec.num_classes == 0 else ""
    if cfg.sample.guidance_scale != 1.0:
        raise ConfigError(f"sample.guidance_scale = {cfg.sample.guidance_scale:g} guides with class labels, but {what}, so the model "
                          f"is unconditional; set sample.guidance_scale = 1, or give the data classes{fix}")
    key = entry.label_key(cfg.flow.options)
    if key:
        raise ConfigError(f"{key} guides with class labels, but {what}, so the model is unconditional; leave {key} at its default, "
                          f"or give the data classes{fix}")


#: resolve_run's default: check_run has not run yet
_UNCHECKED: Any = object()


def resolve_run(cfg: RunConfig, data: ImageData | None = None, *, codec: LatentCodec | None = _UNCHECKED, device: torch.device | str = "cpu",
                progress: bool = False, log: Callable[[str], None] | None = None) -> ResolvedRun:
    """The run `cfg` describes: its data (loaded, or `data` as given; a latent run's pixels are encoded through the
    cache), codec, model record, seeded network and objective. codec: what `check_run(cfg)` returned, when the caller
    ran it already (None for a pixel run); left out, `check_run` runs here."""
    if codec is _UNCHECKED:
        codec = check_run(cfg, device)
    if data is None:
        data, codec = load_training_data(cfg.data, "train", codec=codec, progress=progress, log=log)
    elif codec is not None:  # pixels handed in: encoded (and cached) like a data source's
        data, codec = encode_data(codec, data, cfg.data, "train", progress=progress, log=log)
    side = latent_image_size(cfg.data, codec)
    if data.spec.image_size != side:
        raise ConfigError(f"the data has images of shape {data.shape} but data.image_size is {cfg.data.image_size}; make them agree")
    entry = OBJECTIVES[cfg.flow.objective]
    record = record_from_config(cfg, data.spec, codec.to_record() if codec is not None else None)
    check_labels(cfg, record, entry)
    torch.manual_seed(derive_seed(cfg.run.seed, "init"))
    network = network_for(record)
    teacher, seconds = None, 0.0
    if entry.teacher is not None:
        teacher = load_teacher(entry.teacher(cfg.flow.options), record, device, key=f"flow.{entry.name}.teacher")
        count, solver, steps = entry.endpoint_pairs(cfg.flow.options) if entry.endpoint_pairs is not None else (0, "", 0)
        if count:
            pairs, seconds = endpoint_pairs(teacher, record, count, solver, steps, entry.trained_guidance(cfg.flow.options),
                                            derive_seed(cfg.run.seed, "endpoint_pairs"), device=device, progress=progress, log=log)
            teacher = dataclasses.replace(teacher, pairs=pairs)
            if seconds and log is not None:
                log(f"built {count} endpoint pairs in {seconds:.0f} s (counted in train.max_minutes)")
    objective = entry.make(cfg.flow.settings(), cfg.flow.options, record.null_label, teacher)
    return ResolvedRun(cfg, data, codec, record, network, objective, entry, teacher, seconds)


def build_model(cfg: RunConfig, spec: DataSpec | None = None) -> nn.Module:
    """The untrained network of cfg.model for data of `spec` (default: the spec cfg.data implies, for a fixed release)."""
    return network_for(record_from_config(cfg, spec or dataset_spec(cfg.data)))


__all__ = ["ResolvedRun", "build_model", "check_labels", "check_model_fits", "check_run", "network_for", "resolve_run"]
