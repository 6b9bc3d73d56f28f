"""What sampling needs to know about a trained model, on its own: the `ModelRecord` a checkpoint carries.

    backbone name + its options, path schedule, what the network predicts, flow map or not,
    whether it takes labels (the null label is then num_classes), the data's shape and class
    names, the guidance its samples carry at sampling guidance 1, and the run's default sampler.

A sampler is built from the record alone (`build_network`), so a checkpoint outlives changes to the
training config: keys of the backbone's options that this version does not know (written by a
newer one) are dropped with one warning line, missing ones take their defaults. The full training
config is read strictly only when a run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from imgflow.core.sampling_settings import SamplingSettings
from imgflow.data.spec import DataSpec
from imgflow.nn.backbones import BuiltFor, backbone
from imgflow.objectives import OBJECTIVES

RECORD_VERSION = 1


@dataclass(frozen=True)
class ModelRecord:
    """See the module docstring. `options`: the backbone's [model.<arch>] keys as a dict; `sampling`: the run's
    default sampler as a [sample] table (`SamplingSettings.to_table`; records before issue 25 kept every solver's
    options at its top, which `sampling_settings` still reads); `latent`: for a model trained on an autoencoder's
    latents (imgflow.latents), what decodes them, else None."""

    arch: str
    options: dict[str, Any]
    spec: DataSpec
    conditional: bool
    flow_map: bool = False
    schedule: str = "linear"
    prediction: str = "velocity"
    trained_guidance: float | None = None
    sampling: dict[str, Any] = field(default_factory=dict)
    version: int = RECORD_VERSION
    latent: dict[str, Any] | None = None  # a latent model: the autoencoder's record (or a diffusers VAE's source), digest, shift, scale

    @property
    def image_spec(self) -> DataSpec:
        """The spec of the images it generates: `spec` itself, or for a latent model `spec` with the decoded shape."""
        if not self.latent:
            return self.spec
        # the decoder makes images of the shape it was trained on (imgflow's) or set up for (a diffusers VAE: "image")
        images = self.latent.get("image") or self.latent["autoencoder"]["spec"]
        c, size = images["channels"], images["image_size"]
        return DataSpec(self.spec.dataset, c, size, self.spec.class_names, self.spec.fingerprint)

    def sampling_settings(self) -> SamplingSettings:
        """The run's default sampler: its [sample] table, or (none recorded) Euler, or one flow-map step for a flow map.
        An unconditional model samples at guidance 1 whatever its config asked (configs before issue 25 could ask)."""
        base = SamplingSettings("flow_map", 1) if self.flow_map else SamplingSettings()
        settings = SamplingSettings.from_table(self.sampling, base)
        return settings if self.conditional else dataclasses.replace(settings, guidance=1.0)

    @property
    def null_label(self) -> int | None:
        """The label meaning "no class" (classifier-free guidance's unconditional input)."""
        return self.spec.num_classes if self.conditional else None

    @property
    def built_for(self) -> BuiltFor:
        num_classes = max(self.spec.num_classes, 1) if self.conditional else None
        return BuiltFor(self.spec.channels, self.spec.image_size, num_classes, self.flow_map)

    def to_json(self) -> str:
        raw = dataclasses.asdict(self)
        raw["spec"] = json.loads(self.spec.to_json())
        return json.dumps(raw, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelRecord:
        """Read a record; keys this version does not know are dropped (one warning line)."""
        raw = json.loads(text)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        raw = {k: v for k, v in raw.items() if k in known}
        option_names = {f.name for f in dataclasses.fields(backbone(raw["arch"]).options)}
        unknown += sorted(f"options.{k}" for k in set(raw.get("options", {})) - option_names)
        raw["options"] = {k: v for k, v in raw.get("options", {}).items() if k in option_names}
        if unknown:  # written by a newer version: what this one cannot use is left out, in one line
            _warn(f"the checkpoint's model record has keys this version does not know, ignored: {', '.join(unknown)}")
        raw["spec"] = DataSpec.from_json(json.dumps(raw["spec"]))
        return cls(**raw)


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def options_from_dict(arch: str, values: dict[str, Any]) -> Any:
    """The backbone's options dataclass from a dict of its keys (JSON lists made tuples).

    Keys this version does not know were dropped when the record was read (`ModelRecord.from_json`).
    """
    entry = backbone(arch)
    hints = typing.get_type_hints(entry.options)

    def is_tuple(name: str) -> bool:
        return typing.get_origin(hints[name]) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hints[name]))

    return entry.options(**{k: tuple(v) if isinstance(v, list) and is_tuple(k) else v for k, v in values.items()})


def build_network(record: ModelRecord) -> nn.Module:
    """The untrained network the record describes (load the checkpoint's weights into it)."""
    entry = backbone(record.arch)
    return entry.build(options_from_dict(record.arch, record.options), record.built_for)


def record_from_config(cfg: Any, spec: DataSpec, latent: dict[str, Any] | None = None) -> ModelRecord:
    """The record of a model trained with run config `cfg` (an imgflow.config.RunConfig) on data described by `spec`
    (latent: `LatentCodec.to_record()`)."""
    entry = backbone(cfg.model.arch)
    objective = OBJECTIVES[cfg.flow.objective]
    conditional = entry.conditional(cfg.model.class_conditional, spec.num_classes)
    guidance = objective.guidance_of(cfg.flow.options, conditional)
    return ModelRecord(cfg.model.arch, dataclasses.asdict(cfg.model.options), spec, conditional, objective.flow_map,
                       cfg.flow.schedule, cfg.flow.prediction, guidance, cfg.sample.settings().to_table(), latent=latent)
