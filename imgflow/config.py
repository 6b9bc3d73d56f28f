"""Run configuration: TOML files, command-line overrides and validation.

A run is described by one TOML file with the sections [run], [data], [model], [flow],
[train] and [sample]; every key has a default here. Any key can be overridden from the
command line as `--section.key value`. Unknown keys, wrong types and out-of-range values
are rejected with a one-line `ConfigError` before any work starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and the fix."""


@dataclass
class RunSection:
    name: str = "run"
    output_dir: str = "runs/run"
    seed: int = 0


@dataclass
class DataSection:
    dataset: str = "mnist"  # folder (your images at data.path) or a torchvision dataset (mnist, fashion_mnist, cifar10, ...)
    data_root: str = "data"  # where torchvision datasets live
    image_size: int = 28  # 28 keeps MNIST as is; 32 pads (or resizes, see resize) it
    resize: bool = False  # torchvision data: True = bilinear resize to image_size (the course lab); False = pad with background
    download: bool = True
    hflip: bool = False  # random horizontal flips (datasets whose classes survive a mirror image)
    path: str = ""  # folder data: the folder of images; its sub-folders are the classes
    channels: int = 0  # folder data: 1 (grey) or 3 (RGB); 0 = the dataset's own (3 for folders)
    fit: str = "crop"  # folder data: crop (shorter side to image_size, centre crop) | pad (longer side, black borders)
    holdout_fraction: float = 0.1  # folder data: the share of files held out for evaluation (chosen by path, deterministic)
    skip_bad_images: bool = False  # folder data: leave unreadable images out (counted) instead of stopping
    cache_dir: str = ""  # folder data: where converted images are cached ("" = ~/.cache/imgflow/folders)
    workers: int = 0  # folder data: conversion processes (0 = the available cores)


@dataclass
class ModelSection:
    arch: str = "unet"  # unet | lab_unet
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = 1
    attention_resolutions: tuple[int, ...] = (7,)
    mid_attention: bool = True  # self-attention in the middle block (costly at 14x14 on a CPU)
    num_heads: int = 4
    head_channels: int = 0  # > 0: attention heads of this width instead of num_heads (ADM's num_head_channels)
    scale_shift: bool = False  # FiLM (scale, shift) conditioning in the residual blocks (ADM's use_scale_shift_norm)
    dropout: float = 0.0
    time_embedding: str = "sinusoidal"  # sinusoidal | fourier
    time_scale: float = 1000.0  # sinusoids of time_scale * t (1000: DDPM's convention)
    class_conditional: bool = True
    second_time: str = "none"  # a flow-map model u(x, t, r) embeds "interval" (r - t, MeanFlow's choice) or "end" (r)
    embed_dim: int = 40  # lab_unet only: time/label embedding width


@dataclass
class FlowSection:
    objective: str = "flow_matching"  # flow_matching (a velocity model) | mean_flow (a flow map for 1-2 step sampling)
    schedule: str = "linear"  # linear (linear path) | cosine | sqrt (Gaussian paths)
    prediction: str = "velocity"  # velocity | noise
    loss_reduction: str = "mean"  # mean (per-dim) | sum (per-sample sum of squares)
    time_sampling: str = "uniform"  # uniform | logit_normal
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0
    label_dropout: float = 0.1
    # mean_flow: (t, r) are two sorted logit-normal draws (std 0: uniform), r = t for `equal_fraction` of the samples
    mean_flow_time_mean: float = 0.4
    mean_flow_time_std: float = 1.0
    mean_flow_equal_fraction: float = 0.75
    mean_flow_guidance: float = 1.0  # omega: guidance folded into the training target (samples like w = omega / (1 - kappa))
    mean_flow_guidance_mix: float = 0.0  # kappa: weight of the model's own conditional velocity in that target
    mean_flow_adaptive_p: float = 1.0  # loss weight 1 / (error + eps)^p (0 = plain squared error)


@dataclass
class TrainSection:

    steps: int = 10_000
    max_minutes: float = 0.0  # wall-clock budget; 0 = none
    batch_size: int = 128  # global batch per optimiser step (all processes x accumulation)
    grad_accum: int = 1
    lr: float = 2e-4
    warmup_steps: int = 500
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # 0 = off
    ema_decay: float = 0.999  # 0 = no EMA
    on_nonfinite: str = "stop"  # stop | skip
    channels_last: bool = False
    compile: bool = False
    log_every: int = 50  # also how often the device is read (loss, non-finite guard, stop requests)
    log_with: str = "none"  # also send metrics to an accelerate tracker: tensorboard | wandb | mlflow | ... | all
    sample_every: int = 1000  # 0 = never
    checkpoint_every: int = 1000
    keep_last: int = 3


@dataclass
class SampleSection:
    solver: str = "euler"  # euler | midpoint | heun | rk4 | adaptive | euler_maruyama | flow_map
    num_steps: int = 50
    time_grid: str = "auto"  # auto (the solver's default) | uniform | late (denser near t = 1)
    guidance_scale: float = 1.0
    sde_epsilon: float = 1.0
    num_images: int = 64
    seed: int = 0
    rtol: float = 1e-4
    atol: float = 1e-4


@dataclass
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    flow: FlowSection = field(default_factory=FlowSection)
    train: TrainSection = field(default_factory=TrainSection)
    sample: SampleSection = field(default_factory=SampleSection)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {f.name: dataclasses.asdict(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config") -> RunConfig:
        """Build and validate from {'section': {'key': value}}; unknown keys are errors."""
        cfg = cls()
        apply_tables(cfg, raw, source)
        validate(cfg)
        return cfg

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint metadata") -> RunConfig:
        return cls.from_dict(json.loads(text), source)


SECTIONS = [f.name for f in dataclasses.fields(RunConfig)]

def _choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of every choice key, read from the registries that define them."""
    from accelerate.utils import LoggerType

    from imgflow.core import REDUCTIONS, SCHEDULES, SOLVERS, TIME_GRIDS, TIME_SAMPLINGS
    from imgflow.data import DATASETS
    from imgflow.data.folder import FITS
    from imgflow.nn import ARCHS, TIME_EMBEDDINGS

    return {
        "data.dataset": tuple(DATASETS),
        "data.fit": FITS,
        "model.arch": tuple(ARCHS),
        "model.time_embedding": tuple(TIME_EMBEDDINGS),
        "flow.objective": ("flow_matching", "mean_flow"),
        "model.second_time": ("none", "interval", "end"),
        "flow.schedule": tuple(SCHEDULES),
        # the predictions whose training target stays finite up to t = 1 (a score's does not)
        "flow.prediction": ("velocity", "noise"),
        "flow.loss_reduction": REDUCTIONS,
        "flow.time_sampling": TIME_SAMPLINGS,
        "train.on_nonfinite": ("stop", "skip"),
        "train.log_with": ("none", *(t.value for t in LoggerType)),
        "sample.solver": tuple(SOLVERS),
        "sample.time_grid": ("auto", *TIME_GRIDS),
    }


CHOICES: dict[str, tuple[str, ...]] = _choices()


def _suggest(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def all_keys() -> list[str]:
    """Every 'section.key' the configuration knows."""
    return [
        f"{s}.{f.name}"
        for s in SECTIONS
        for f in dataclasses.fields(typing.get_type_hints(RunConfig)[s])
    ]


def _field_type(section_obj: Any, key: str) -> Any:
    return typing.get_type_hints(type(section_obj))[key]


def coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check `value` against a field annotation (int, float, bool, str, tuple[int, ...])."""
    where = f"config key {key} (from {source})"
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where} must be an integer, got {type(value).__name__} {value!r}")
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{where} must be a number, got {type(value).__name__} {value!r}")
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where} must be a string, got {type(value).__name__} {value!r}")
    if typing.get_origin(annotation) is tuple:
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of integers like [1, 2, 2], got {value!r}")
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")  # pragma: no cover


def set_value(cfg: RunConfig, dotted: str, value: Any, source: str = "command line") -> None:
    """Set 'section.key' on cfg after checking that the key exists and the type fits."""
    section, _, key = dotted.partition(".")
    if section not in SECTIONS or not key:
        raise ConfigError(f"unknown config key {dotted!r} (from {source}){_suggest(dotted, all_keys())}")
    obj = getattr(cfg, section)
    names = [f.name for f in dataclasses.fields(obj)]
    if key not in names:
        raise ConfigError(f"unknown config key {dotted!r} (from {source}){_suggest(dotted, all_keys())}")
    setattr(obj, key, coerce(value, _field_type(obj, key), dotted, source))


def apply_tables(cfg: RunConfig, raw: dict[str, Any], source: str) -> None:
    """Set every key of {'section': {'key': value}} on cfg (type-checked, not yet validated)."""
    for section, values in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"unknown config section [{section}] in {source}{_suggest(section, SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {source} must be a table of keys, got {type(values).__name__}")
        for key, value in values.items():
            set_value(cfg, f"{section}.{key}", value, source)


def parse_literal(text: str) -> Any:
    """A command-line value as TOML (1e-3, true, [1, 2]); anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def validate(cfg: RunConfig) -> None:
    """Choices and ranges that a type check cannot see."""
    for dotted, options in CHOICES.items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if value not in options:
            raise ConfigError(f"config key {dotted} = {value!r} is not one of: {', '.join(options)}")

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    train, model, data, flow, sample = cfg.train, cfg.model, cfg.data, cfg.flow, cfg.sample
    need(train.lr > 0, f"train.lr must be > 0, got {train.lr}")
    need(train.steps >= 1, f"train.steps must be >= 1, got {train.steps}")
    need(train.batch_size >= 1, f"train.batch_size must be >= 1, got {train.batch_size}")
    need(train.grad_accum >= 1, f"train.grad_accum must be >= 1, got {train.grad_accum}")
    need(train.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {train.warmup_steps}")
    need(train.max_minutes >= 0, f"train.max_minutes must be >= 0 (0 = no limit), got {train.max_minutes}")
    need(0.0 <= train.ema_decay < 1.0, f"train.ema_decay must be in [0, 1) (0 = off), got {train.ema_decay}")
    need(train.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 = off), got {train.grad_clip}")
    need(0.0 <= train.adam_beta1 < 1.0 and 0.0 <= train.adam_beta2 < 1.0, "train.adam_beta1/adam_beta2 must be in [0, 1)")
    need(train.weight_decay >= 0, f"train.weight_decay must be >= 0, got {train.weight_decay}")
    for key in ("log_every", "checkpoint_every", "keep_last"):
        need(getattr(train, key) >= 1, f"train.{key} must be >= 1, got {getattr(train, key)}")
    need(train.sample_every >= 0, f"train.sample_every must be >= 0 (0 = never), got {train.sample_every}")
    need(data.image_size >= 4, f"data.image_size must be >= 4, got {data.image_size}")
    _validate_data(data)
    need(model.base_channels >= 1 and model.num_res_blocks >= 1, "model.base_channels and model.num_res_blocks must be >= 1")
    need(len(model.channel_mults) >= 1 and all(c >= 1 for c in model.channel_mults),
         "model.channel_mults must be a non-empty list of positive integers")
    need(0.0 <= model.dropout < 1.0, f"model.dropout must be in [0, 1), got {model.dropout}")
    need(0.0 <= flow.label_dropout < 1.0, f"flow.label_dropout must be in [0, 1), got {flow.label_dropout}")
    need(flow.logit_normal_std > 0, f"flow.logit_normal_std must be > 0, got {flow.logit_normal_std}")
    _validate_objective(cfg, need)
    need(sample.num_steps >= 1, f"sample.num_steps must be >= 1, got {sample.num_steps}")
    need(sample.num_images >= 1, f"sample.num_images must be >= 1, got {sample.num_images}")
    need(sample.sde_epsilon >= 0, f"sample.sde_epsilon must be >= 0, got {sample.sde_epsilon}")
    need(sample.guidance_scale == 1.0 or model.class_conditional,
         f"sample.guidance_scale = {sample.guidance_scale} needs a class-conditional model; "
         "set model.class_conditional = true or guidance_scale = 1")


def _validate_objective(cfg: RunConfig, need: typing.Callable[[bool, str], None]) -> None:
    flow, model = cfg.flow, cfg.model
    if flow.objective == "flow_matching":
        need(cfg.sample.solver != "flow_map", "sample.solver = 'flow_map' needs a flow-map model (flow.objective = 'mean_flow'); "
             "use euler or another ODE solver")
        return
    need(model.arch == "unet" and model.second_time != "none",
         "flow.objective = 'mean_flow' trains a flow map u(x, t, r): set model.arch = 'unet' and model.second_time = 'interval'")
    need(flow.prediction == "velocity", "flow.objective = 'mean_flow' predicts an average velocity: set flow.prediction = 'velocity'")
    need(0.0 <= flow.mean_flow_equal_fraction <= 1.0, f"flow.mean_flow_equal_fraction must be in [0, 1], got {flow.mean_flow_equal_fraction}")
    need(flow.mean_flow_time_std >= 0, f"flow.mean_flow_time_std must be >= 0 (0 = uniform times), got {flow.mean_flow_time_std}")
    need(0.0 <= flow.mean_flow_guidance_mix < 1.0, f"flow.mean_flow_guidance_mix must be in [0, 1), got {flow.mean_flow_guidance_mix}")
    need(flow.mean_flow_guidance > 0.0, f"flow.mean_flow_guidance must be > 0 (1 = no guidance), got {flow.mean_flow_guidance}")
    need(flow.mean_flow_adaptive_p >= 0, f"flow.mean_flow_adaptive_p must be >= 0, got {flow.mean_flow_adaptive_p}")
    need((flow.mean_flow_guidance == 1.0 and flow.mean_flow_guidance_mix == 0.0) or model.class_conditional,
         "flow.mean_flow_guidance needs a class-conditional model; set model.class_conditional = true or the guidance to 1")


def _validate_data(data: DataSection) -> None:
    from imgflow.data import TorchvisionDataset, dataset_entry

    entry = dataset_entry(data.dataset)
    if data.hflip and not getattr(entry, "flippable", True):
        raise ConfigError(f"data.hflip = true would mirror {data.dataset} images into other symbols; set it false")
    if isinstance(entry, TorchvisionDataset):
        if data.channels not in (0, entry.channels):
            raise ConfigError(f"{data.dataset} images have {entry.channels} channel(s); leave data.channels at 0 (got {data.channels})")
        return
    if not data.path:
        raise ConfigError("data.dataset = 'folder' needs data.path, the folder that holds your images (sub-folders are classes)")
    if data.channels not in (0, 1, 3):
        raise ConfigError(f"data.channels must be 1 (grey) or 3 (RGB) for folder data, got {data.channels}")
    if not 0.0 <= data.holdout_fraction < 1.0:
        raise ConfigError(f"data.holdout_fraction must be in [0, 1), got {data.holdout_fraction}")
    if data.workers < 0:
        raise ConfigError(f"data.workers must be >= 0 (0 = the available cores), got {data.workers}")


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a TOML file (None: defaults), apply {'section.key': value} overrides, validate."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist; pass one of the files in configs/")
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        source = str(p)
    cfg = RunConfig()
    apply_tables(cfg, raw, source)
    for dotted, value in (overrides or {}).items():
        set_value(cfg, dotted, value, "command line")
    validate(cfg)
    return cfg


def add_override_arguments(parser: typing.Any, sections: typing.Sequence[str] = tuple(SECTIONS)) -> None:
    """Add one `--section.key VALUE` option per config key (of the given sections) to an argparse parser."""
    defaults = RunConfig().to_dict()
    for dotted in all_keys():
        section, key = dotted.split(".")
        if section not in sections:
            continue
        parser.add_argument(
            f"--{dotted}",
            dest=f"override:{dotted}",
            metavar="VALUE",
            default=None,
            help=f"override {dotted} (default {defaults[section][key]!r})",
        )


def overrides_from_args(args: typing.Any) -> dict[str, Any]:
    """Collect the `--section.key` values that were given, parsed as TOML literals."""
    out = {}
    for name, value in vars(args).items():
        if name.startswith("override:") and value is not None:
            out[name.split(":", 1)[1]] = parse_literal(value)
    return out
