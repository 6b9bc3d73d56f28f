"""What a run configuration must satisfy beyond its types: choices, ranges, how the selected entries fit, and the keys
that have no effect for them (refused when set away from their default; dropped from configs imgflow wrote).

Every rule reads the registries: the data source's and the objective's `unused_keys`, a backbone's labels and
`flow_map_keys`, a solver's options. Functions take a `RunConfig` (imgflow.config, which calls them).
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from accelerate.utils import LoggerType

from imgflow.core import REDUCTIONS, SCHEDULES, SOLVERS, TIME_GRIDS
from imgflow.data.sources import DATASETS
from imgflow.errors import ConfigError
from imgflow.nn.backbones import BACKBONES
from imgflow.objectives import OBJECTIVES, PREDICTIONS


def selectors(cfg: Any) -> dict[str, str]:
    """{'data': 'data.dataset', 'model': 'model.arch', ...}: the selector key of each section that picks a registry entry."""
    out = {}
    for f in dataclasses.fields(cfg):
        selector = getattr(type(getattr(cfg, f.name)), "selector", None)
        if selector:
            out[f.name] = f"{f.name}.{selector}"
    return out


def field_default(obj: Any, key: str) -> Any:
    """The default of a dataclass field."""
    f = next(f for f in dataclasses.fields(obj) if f.name == key)
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()


def _choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of every choice key, read from the registries that define them."""
    return {
        "data.dataset": tuple(DATASETS),
        "model.arch": tuple(BACKBONES),
        "flow.objective": tuple(OBJECTIVES),
        "flow.schedule": tuple(SCHEDULES),
        "flow.prediction": PREDICTIONS,
        "flow.loss_reduction": REDUCTIONS,
        "train.on_nonfinite": ("stop", "skip"),
        "train.log_with": ("none", *(t.value for t in LoggerType)),
        "sample.solver": tuple(SOLVERS),
        "sample.time_grid": ("auto", *TIME_GRIDS),
    }


class _Choices(typing.Mapping[str, tuple[str, ...]]):
    """CHOICES, read from the registries when used (an entry registered later is still a choice)."""

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return _choices()[key]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(_choices())

    def __len__(self) -> int:
        return len(_choices())


#: 'section.key' -> its allowed values
CHOICES: typing.Mapping[str, tuple[str, ...]] = _Choices()


# --- keys that have no effect ---------------------------------------------------------------------


def unused_keys(cfg: Any) -> dict[str, str]:
    """{'section.key': why it has no effect} for the keys the selected data source, backbone, objective and solver do
    not read. Variant keys are 'section.variant.key'; a section whose selector is unused has no variant keys either."""
    source, arch, objective = DATASETS[cfg.data.dataset], BACKBONES[cfg.model.arch], OBJECTIVES[cfg.flow.objective]
    out: dict[str, str] = {**getattr(source, "unused_keys", {}), **objective.unused_keys}
    takes_labels = {"always": True, "never": False}.get(arch.labels if arch.kind == "flow" else "never")
    if takes_labels is not None and cfg.model.class_conditional != takes_labels:  # asking for what the backbone cannot do
        out["model.class_conditional"] = f"model.arch = {arch.name!r} {'always' if takes_labels else 'never'} takes class labels"
    if not objective.flow_map:
        flow_maps = " | ".join(n for n, e in OBJECTIVES.items() if e.flow_map)
        for key in arch.flow_map_keys:
            out[f"model.{arch.name}.{key}"] = (f"only a flow map has a second time, and flow.objective = {objective.name!r} trains "
                                               f"a velocity (flow.objective = {flow_maps} trains a flow map)")
    if not cfg.data.autoencoder:
        out["data.latent_cache_dir"] = "it says where encoded latents are cached, and this run has no data.autoencoder"
    for section, dotted in selectors(cfg).items():
        if dotted in out:
            obj = getattr(cfg, section)
            for f in dataclasses.fields(obj.options):
                out[f"{section}.{obj.selected}.{f.name}"] = out[dotted]
    return out


def _value_andfield_default(cfg: Any, dotted: str) -> tuple[Any, Any]:
    section, _, key = dotted.partition(".")
    obj = getattr(cfg, section)
    if "." in key:
        variant, _, key = key.partition(".")
        obj = obj.variant(variant)
    return getattr(obj, key), field_default(obj, key)


def check_no_unused_keys(cfg: Any) -> None:
    """ConfigError for the first key that is set away from its default and has no effect with the selected entries (set to
    its default, a key changes nothing either way)."""
    for dotted, why in sorted(unused_keys(cfg).items()):
        value, default = _value_andfield_default(cfg, dotted)
        if value != default:
            raise ConfigError(f"config key {dotted} = {value!r} has no effect here: {why}; remove it")


def forget_unused_keys(cfg: Any) -> None:
    """Reset the keys that have no effect to their defaults (a config imgflow wrote before they were refused)."""
    for dotted in unused_keys(cfg):
        section, _, key = dotted.partition(".")
        obj = getattr(cfg, section)
        if "." in key:
            variant, _, name = key.partition(".")
            options = obj.variant(variant)
            if getattr(options, name) != field_default(options, name):
                obj.set_option(variant, name, field_default(options, name))
        else:
            setattr(obj, key, field_default(obj, key))


# --- validation -----------------------------------------------------------------------------------


def validate(cfg: Any) -> None:
    """Choices and ranges that a type check cannot see, keys without effect, and how the selected entries fit."""
    for dotted, options in _choices().items():
        section, key = dotted.split(".")
        value = getattr(getattr(cfg, section), key)
        if value not in options:
            raise ConfigError(f"config key {dotted} = {value!r} is not one of: {', '.join(options)}")

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise ConfigError(message)

    train, data, flow, sample = cfg.train, cfg.data, cfg.flow, cfg.sample
    need(train.lr > 0, f"train.lr must be > 0, got {train.lr}")
    need(train.steps >= 1, f"train.steps must be >= 1, got {train.steps}")
    need(train.batch_size >= 1, f"train.batch_size must be >= 1, got {train.batch_size}")
    need(train.grad_accum >= 1, f"train.grad_accum must be >= 1, got {train.grad_accum}")
    need(train.micro_batch >= 0, f"train.micro_batch must be >= 0 (0: batch_size / (processes x grad_accum)), got {train.micro_batch}")
    need(train.micro_batch == 0 or train.grad_accum == 1,
         f"train.micro_batch = {train.micro_batch} decides the accumulation, and train.grad_accum = {train.grad_accum} is set too; "
         "keep one of them (micro_batch: the same global batches on any process count)")
    need(train.micro_batch == 0 or train.batch_size % train.micro_batch == 0,
         f"train.batch_size {train.batch_size} is not a multiple of train.micro_batch {train.micro_batch}; use a divisor of it")
    need(train.warmup_steps >= 0, f"train.warmup_steps must be >= 0, got {train.warmup_steps}")
    need(train.max_minutes >= 0, f"train.max_minutes must be >= 0 (0 = no limit), got {train.max_minutes}")
    need(0.0 <= train.ema_decay < 1.0, f"train.ema_decay must be in [0, 1) (0 = off), got {train.ema_decay}")
    need(all(0.0 < d < 1.0 for d in train.extra_ema_decays) and len(set(train.extra_ema_decays)) == len(train.extra_ema_decays)
         and train.ema_decay not in train.extra_ema_decays,
         f"train.extra_ema_decays must be distinct decays in (0, 1), other than train.ema_decay, got {list(train.extra_ema_decays)}")
    need(train.grad_clip >= 0, f"train.grad_clip must be >= 0 (0 = off), got {train.grad_clip}")
    need(0.0 <= train.adam_beta1 < 1.0 and 0.0 <= train.adam_beta2 < 1.0, "train.adam_beta1/adam_beta2 must be in [0, 1)")
    need(train.weight_decay >= 0, f"train.weight_decay must be >= 0, got {train.weight_decay}")
    for key in ("log_every", "checkpoint_every", "keep_last"):
        need(getattr(train, key) >= 1, f"train.{key} must be >= 1, got {getattr(train, key)}")
    need(train.sample_every >= 0, f"train.sample_every must be >= 0 (0 = never), got {train.sample_every}")
    need(data.image_size >= 4, f"data.image_size must be >= 4, got {data.image_size}")
    need(not (data.hflip and data.autoencoder), "data.hflip mirrors the training rows, which for data.autoencoder are latents, not images; "
         "set data.hflip = false for a latent run")
    need(0.0 <= flow.label_dropout < 1.0, f"flow.label_dropout must be in [0, 1), got {flow.label_dropout}")
    need(sample.num_images >= 1, f"sample.num_images must be >= 1, got {sample.num_images}")
    try:
        sample.settings().validate()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    check_no_unused_keys(cfg)
    _validate_variants(cfg)
    need(sample.guidance_scale == 1.0 or cfg.model.class_conditional or BACKBONES[cfg.model.arch].labels == "always",
         f"sample.guidance_scale = {sample.guidance_scale:g} needs a class-conditional model; "
         "set model.class_conditional = true or guidance_scale = 1")


def _validate_variants(cfg: Any) -> None:
    """The selected backbone, objective and data source check their own sections (and how they fit together)."""
    for name in selectors(cfg):
        section = getattr(cfg, name)
        stray = sorted(section.set_variants() - {section.selected})
        if stray:
            raise ConfigError(f"[{name}.{stray[0]}] is set but {name}.{section.selector} = {section.selected!r}: its keys apply only to "
                              f"{name}.{section.selector} = {stray[0]!r}; remove them or set {name}.{section.selector} = {stray[0]!r}")
    arch, objective = BACKBONES[cfg.model.arch], OBJECTIVES[cfg.flow.objective]
    try:
        arch.validate(cfg.model.options)
    except ValueError as exc:
        raise ConfigError(f"[model.{arch.name}] {exc}") from None
    try:
        objective.validate(cfg.flow.options)
    except ValueError as exc:
        raise ConfigError(f"[flow.{objective.name}] {exc}") from None
    if objective.kind != arch.kind:
        fitting = [n for n, b in BACKBONES.items() if b.kind == objective.kind]
        trainer = " | ".join(n for n, e in OBJECTIVES.items() if e.kind == arch.kind)
        raise ConfigError(f"flow.objective = {objective.name!r} trains {'an autoencoder' if objective.kind == 'autoencoder' else 'a flow model'}, "
                          f"which model.arch = {arch.name!r} is not; use model.arch = {' | '.join(fitting)}"
                          f" (model.arch = {arch.name!r} is trained with flow.objective = {trainer})")
    if objective.flow_map and not arch.flow_map:
        raise ConfigError(f"flow.objective = {objective.name!r} trains a flow map u(x, t, r), which model.arch = {arch.name!r} "
                          f"cannot take (no second time); use one of: {', '.join(n for n, b in BACKBONES.items() if b.flow_map)}")
    if objective.kind == "flow" and cfg.flow.prediction not in objective.predictions:
        raise ConfigError(f"flow.objective = {objective.name!r} trains flow.prediction {' or '.join(objective.predictions)}; "
                          f"set flow.prediction = {objective.predictions[0]!r}")
    if cfg.data.autoencoder and not objective.trains_on_latents:
        raise ConfigError(f"flow.objective = {objective.name!r} trains on pixels: leave data.autoencoder out of its config "
                          "(it is for latent runs)")
    label_key = objective.label_key(cfg.flow.options)
    if label_key and not (cfg.model.class_conditional or arch.labels == "always"):
        raise ConfigError(f"{label_key} needs a class-conditional model; set model.class_conditional = true or {label_key} to its default")
    if cfg.train.compile and objective.flow_map and getattr(cfg.model.options, "dropout", 0.0) > 0:
        raise ConfigError(f"train.compile with flow.objective = {objective.name!r} and model.{arch.name}.dropout > 0: a compiled graph draws "
                          "its own dropout masks, so the flow map's JVP and its prediction would see different ones; set the dropout to "
                          "0 or train.compile = false")
    if cfg.train.init_from and objective.starts_from_teacher is not None and objective.starts_from_teacher(cfg.flow.options):
        raise ConfigError(f"train.init_from and flow.{objective.name}.init_from_teacher = true both choose the weights the run starts "
                          f"from; set flow.{objective.name}.init_from_teacher = false to start from train.init_from, or leave "
                          "train.init_from out to start from the teacher")
    solver = SOLVERS[cfg.sample.solver]
    if objective.kind == "flow" and solver.flow_map and not objective.flow_map:
        flow_maps = " | ".join(n for n, e in OBJECTIVES.items() if e.flow_map)
        odes = ", ".join(n for n, s in SOLVERS.items() if not s.flow_map)
        raise ConfigError(f"sample.solver = {cfg.sample.solver!r} needs a flow-map model (flow.objective = {flow_maps}); flow.objective = "
                          f"{objective.name!r} trains a velocity: use one of {odes}")
    source = DATASETS[cfg.data.dataset]
    try:
        source.validate(cfg.data, cfg.data.options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


__all__ = ["CHOICES", "check_no_unused_keys", "field_default", "forget_unused_keys", "selectors", "unused_keys", "validate"]
