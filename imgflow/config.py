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


class VariantSection:
    """A section whose selector key picks a registry entry with options of its own, in `[section.<name>]`.

    `options` is the options dataclass of the selected entry (defaults until a key of it is set);
    `variant(name)` gives any registered entry's options. Only the selected entry's options are
    validated, written to JSON and used.
    """

    selector: typing.ClassVar[str]

    def variant(self, name: str) -> Any:
        store = self.__dict__.setdefault("_variants", {})
        if name not in store:
            store[name] = variant_registry(self)[name]()
        return store[name]

    @property
    def options(self) -> Any:
        return self.variant(getattr(self, self.selector))

    def variant_names(self) -> tuple[str, ...]:
        return tuple(variant_registry(self))

    def __getattr__(self, name: str) -> Any:
        """cfg.model.unet, cfg.flow.mean_flow, cfg.data.folder: a registered entry's options by its name."""
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            registry = variant_registry(self)
        except Exception:  # pragma: no cover - registry not importable yet
            registry = {}
        if name in registry:
            return self.variant(name)
        raise AttributeError(f"{type(self).__name__} has no key or section {name!r}")


@dataclass
class DataSection(VariantSection):
    """[data]; the options of a data source live in [data.<dataset>] (e.g. [data.folder] path = "...")."""

    selector: typing.ClassVar[str] = "dataset"
    dataset: str = "mnist"  # folder (your images at data.folder.path) or a torchvision dataset (mnist, fashion_mnist, cifar10, ...)
    data_root: str = "data"  # where torchvision datasets live
    image_size: int = 28  # 28 keeps MNIST as is; 32 pads (or resizes, see resize) it
    resize: bool = False  # torchvision data: True = bilinear resize to image_size (the course lab); False = pad with background
    download: bool = True
    hflip: bool = False  # random horizontal flips (datasets whose classes survive a mirror image)
    autoencoder: str = ""  # latent training: an autoencoder checkpoint (file or run folder); the data is encoded once
    latent_cache_dir: str = ""  # where encoded datasets are cached (default ~/.cache/imgflow/latents)


@dataclass
class ModelSection(VariantSection):
    """[model]; the network's own keys live in [model.<arch>] (e.g. [model.unet] base_channels = 16)."""

    selector: typing.ClassVar[str] = "arch"
    arch: str = "unet"  # a registered backbone: unet | lab_unet | dit | ...
    class_conditional: bool = True  # take class labels when the data has them (guidance needs it)


@dataclass
class FlowSection(VariantSection):
    """[flow]; an objective's own keys live in [flow.<objective>] (e.g. [flow.mean_flow] guidance = 1.5)."""

    selector: typing.ClassVar[str] = "objective"
    objective: str = "flow_matching"  # flow_matching (a velocity model) | mean_flow (a flow map for 1-2 step sampling) | autoencoder
    schedule: str = "linear"  # linear (linear path) | cosine | sqrt (Gaussian paths)
    prediction: str = "velocity"  # velocity | noise
    loss_reduction: str = "mean"  # mean (per-dim) | sum (per-sample sum of squares)
    time_sampling: str = "uniform"  # uniform | logit_normal
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0
    label_dropout: float = 0.1


@dataclass
class TrainSection:

    steps: int = 10_000
    init_from: str = ""  # start from this checkpoint's weights (file or run folder; a flow map from a velocity model); "" = from scratch
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
    ema_warmup: bool = True  # the EMA's decay is min(ema_decay, (1 + n) / (10 + n)) at update n
    extra_ema_decays: tuple[float, ...] = ()  # plain EMAs (fixed decay, no warm-up) kept beside it; sample one with weights = "ema@0.99"
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
    solver: str = "euler"  # euler | midpoint | heun | rk4 | adaptive | euler_maruyama | flow_map | consistency
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
        """{'section': {'key': value, '<selected variant>': {'key': value}}}, as a TOML file would nest it."""
        out: dict[str, dict[str, Any]] = {}
        for f in dataclasses.fields(self):
            obj = getattr(self, f.name)
            out[f.name] = dataclasses.asdict(obj)
            if isinstance(obj, VariantSection):
                out[f.name][getattr(obj, obj.selector)] = dataclasses.asdict(obj.options)
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config", lenient: bool = False) -> RunConfig:
        """Build and validate from {'section': {'key': value}}; unknown keys are errors.

        lenient: for reading what an older or newer version wrote (a checkpoint's record of its training
        config): keys that moved are mapped, unknown keys are dropped, and nothing is range-checked.
        """
        cfg = cls()
        apply_tables(cfg, raw, source, lenient=lenient)
        if not lenient:
            validate(cfg)
        return cfg

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint metadata", lenient: bool = False) -> RunConfig:
        return cls.from_dict(json.loads(text), source, lenient)


SECTIONS = [f.name for f in dataclasses.fields(RunConfig)]


def variant_registry(section: VariantSection) -> dict[str, type]:
    """{entry name: options dataclass} of the registry that a variant section's selector picks from."""
    if isinstance(section, ModelSection):
        from imgflow.nn.backbones import backbones

        return {name: entry.options for name, entry in backbones().items()}
    if isinstance(section, FlowSection):
        from imgflow.training.objectives import OBJECTIVES

        return {name: entry.options for name, entry in OBJECTIVES.items()}
    if isinstance(section, DataSection):
        from imgflow.data import DATASETS

        return {name: entry.options for name, entry in DATASETS.items()}
    raise TypeError(f"{type(section).__name__} has no registry")  # pragma: no cover


def _choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of every choice key, read from the registries that define them."""
    from accelerate.utils import LoggerType

    from imgflow.core import REDUCTIONS, SCHEDULES, SOLVERS, TIME_GRIDS, TIME_SAMPLINGS
    from imgflow.data import DATASETS
    from imgflow.nn.backbones import backbones
    from imgflow.training.objectives import OBJECTIVES, PREDICTIONS

    return {
        "data.dataset": tuple(DATASETS),
        "model.arch": tuple(backbones()),
        "flow.objective": tuple(OBJECTIVES),
        "flow.schedule": tuple(SCHEDULES),
        "flow.prediction": PREDICTIONS,
        "flow.loss_reduction": REDUCTIONS,
        "flow.time_sampling": TIME_SAMPLINGS,
        "train.on_nonfinite": ("stop", "skip"),
        "train.log_with": ("none", *(t.value for t in LoggerType)),
        "sample.solver": tuple(SOLVERS),
        "sample.time_grid": ("auto", *TIME_GRIDS),
    }


class _Choices(typing.Mapping[str, tuple[str, ...]]):
    """CHOICES, read from the registries when first used (a backbone registered later is still a choice)."""

    def __getitem__(self, key: str) -> tuple[str, ...]:
        return _choices()[key]

    def __iter__(self) -> typing.Iterator[str]:
        return iter(_choices())

    def __len__(self) -> int:
        return len(_choices())


#: 'section.key' -> its allowed values
CHOICES: typing.Mapping[str, tuple[str, ...]] = _Choices()


def _suggest(name: str, options: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def all_keys(cfg: RunConfig | None = None) -> list[str]:
    """Every 'section.key' and 'section.variant.key' the configuration knows."""
    cfg = cfg or RunConfig()
    keys = []
    for s in SECTIONS:
        obj = getattr(cfg, s)
        keys += [f"{s}.{f.name}" for f in dataclasses.fields(obj)]
        if isinstance(obj, VariantSection):
            for name in obj.variant_names():
                keys += [f"{s}.{name}.{f.name}" for f in dataclasses.fields(obj.variant(name))]
    return keys


def _field_type(section_obj: Any, key: str) -> Any:
    return typing.get_type_hints(type(section_obj))[key]


def coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check `value` against a field annotation (int, float, bool, str, tuple[int, ...], or X | None)."""
    where = f"config key {key} (from {source})"
    args = typing.get_args(annotation)
    if type(None) in args and len(args) == 2:  # X | None: TOML has no null, so a value is an X (leave the key out for None)
        annotation = next(a for a in args if a is not type(None))
        if value is None:
            return None
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
        if typing.get_args(annotation)[0] is float:
            if isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
                return tuple(float(v) for v in value)
            raise ConfigError(f"{where} must be a list of numbers like [0.99, 0.995], got {value!r}")
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
        raise ConfigError(f"{where} must be a list of integers like [1, 2, 2], got {value!r}")
    raise TypeError(f"unsupported annotation {annotation!r} for {key}")  # pragma: no cover


def _target(cfg: RunConfig, dotted: str, source: str) -> tuple[Any, str]:
    """(the dataclass object that holds the key, the key) for 'section.key' or 'section.variant.key'."""
    parts = dotted.split(".")

    def unknown() -> ConfigError:
        return ConfigError(f"unknown config key {dotted!r} (from {source}){_suggest(dotted, all_keys(cfg))}")

    if parts[0] not in SECTIONS or len(parts) not in (2, 3) or not all(parts):
        raise unknown()
    obj = getattr(cfg, parts[0])
    if len(parts) == 3:
        if not isinstance(obj, VariantSection) or parts[1] not in obj.variant_names():
            raise unknown()
        obj.__dict__.setdefault("_set_variants", set()).add(parts[1])
        obj = obj.variant(parts[1])
    if parts[-1] not in [f.name for f in dataclasses.fields(obj)]:
        raise unknown()
    return obj, parts[-1]


def set_value(cfg: RunConfig, dotted: str, value: Any, source: str = "command line") -> None:
    """Set 'section.key' (or 'section.variant.key') on cfg after checking that the key exists and the type fits.

    A key of the flat layout before issue 16 (model.base_channels, flow.mean_flow_guidance, data.path, ...)
    is set where it lives now, with a one-line note on stderr.
    """
    moved = migrate_flat({dotted.split(".")[0]: _nest(dotted.split(".")[1:], value)} if "." in dotted else {}, _selected(cfg))
    if moved.notes:
        _note(moved.notes, source)
        for new_dotted, new_value in flatten_tables(moved.tables):
            obj, key = _target(cfg, new_dotted, source)
            setattr(obj, key, coerce(new_value, _field_type(obj, key), new_dotted, source))
        return
    obj, key = _target(cfg, dotted, source)
    setattr(obj, key, coerce(value, _field_type(obj, key), dotted, source))


def _nest(parts: list[str], value: Any) -> Any:
    return value if not parts else {parts[0]: _nest(parts[1:], value)}


def flatten_tables(tables: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """[('section.key' or 'section.variant.key', value)] of nested tables."""
    out = []
    for key, value in tables.items():
        if isinstance(value, dict):
            out += flatten_tables(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def _selected(cfg: RunConfig) -> dict[str, str]:
    return {"model": cfg.model.arch, "flow": cfg.flow.objective, "data": cfg.data.dataset}


def apply_tables(cfg: RunConfig, raw: dict[str, Any], source: str, lenient: bool = False) -> None:
    """Set every key of {'section': {'key': value, 'variant': {'key': value}}} on cfg (type-checked, not yet validated).

    Flat files of the layout before issue 16 are mapped to today's sections first (one note line on stderr).
    lenient: unknown sections and keys are dropped instead of refused.
    """
    for section, values in raw.items():
        if section not in SECTIONS:
            if lenient:
                continue
            raise ConfigError(f"unknown config section [{section}] in {source}{_suggest(section, SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {source} must be a table of keys, got {type(values).__name__}")
    selectors = {s: raw.get(s, {}).get(getattr(type(getattr(cfg, s)), "selector", ""), None) for s in SECTIONS}
    selected = {s: v for s, v in selectors.items() if isinstance(v, str)}
    migrated = migrate_flat({s: v for s, v in raw.items() if s in SECTIONS}, {**_selected(cfg), **selected})
    if migrated.notes and not lenient:
        _note(migrated.notes, source)
    for dotted, value in flatten_tables(migrated.tables):
        try:
            obj, key = _target(cfg, dotted, source)
        except ConfigError:
            if not lenient:
                raise
            continue
        try:
            setattr(obj, key, coerce(value, _field_type(obj, key), dotted, source))
        except ConfigError:
            if not lenient:
                raise
    # lenient reading drops what it cannot place silently: sampling needs only the model record, and a resume
    # reads the config strictly, naming the key


def _note(notes: list[str], source: str) -> None:
    shown = "; ".join(notes[:6]) + (f"; and {len(notes) - 6} more" if len(notes) > 6 else "")
    print(f"note: {source} uses the flat config layout of imgflow 0.2 and still loads; moved: {shown}", file=sys.stderr)


@dataclass
class Migrated:
    tables: dict[str, Any]
    notes: list[str]


#: keys of the flat [model] section before issue 16 that belonged to the U-Net (now [model.unet])
_FLAT_UNET = ("base_channels", "channel_mults", "num_res_blocks", "attention_resolutions", "mid_attention", "num_heads",
              "head_channels", "scale_shift", "dropout", "time_embedding", "time_scale", "second_time")
#: the folder-only keys of the flat [data] section (now [data.folder])
_FLAT_FOLDER = ("path", "channels", "fit", "holdout_fraction", "skip_bad_images", "cache_dir", "workers")
#: placeholders of the flat layout that meant "not set" (now: leave the key out)
_PLACEHOLDERS = {("model", "head_channels"): 0, ("model", "second_time"): "none", ("data", "channels"): 0,
                 ("data", "cache_dir"): "", ("data", "workers"): 0, ("data", "path"): ""}


def migrate_flat(raw: dict[str, Any], selected: dict[str, str]) -> Migrated:
    """Map keys of the flat layout (before issue 16) to today's sections; `selected`: the section's selector values.

    [model] U-Net keys -> [model.unet] (with arch = lab_unet: base_channels x channel_mults -> channels,
    num_res_blocks -> num_residual_layers, embed_dim -> embed_dim); [flow] mean_flow_X -> [flow.mean_flow] X;
    the seven folder keys of [data] -> [data.folder]; placeholders (head_channels = 0, second_time = "none",
    channels = 0, cache_dir = "", workers = 0, path = "") are dropped, since leaving the key out says the same.
    """
    tables = {s: dict(v) if isinstance(v, dict) else v for s, v in raw.items()}
    notes: list[str] = []

    def move(section: str, key: str, dest: tuple[str, ...], value: Any) -> None:
        tables[section].pop(key, None)
        if _PLACEHOLDERS.get((section, key), object()) == value:
            notes.append(f"{section}.{key} = {value!r} -> left out (unset)")
            return
        node = tables
        for part in dest[:-1]:
            node = node.setdefault(part, {})
        node[dest[-1]] = value
        notes.append(f"{section}.{key} -> {'.'.join(dest)}")

    model = tables.get("model")
    if isinstance(model, dict):
        arch = selected.get("model", "unet")
        flat = {k: model[k] for k in (*_FLAT_UNET, "embed_dim") if k in model and not isinstance(model[k], dict)}
        if arch == "lab_unet" and flat:
            for key in flat:
                model.pop(key)
            lab = tables["model"].setdefault("lab_unet", {})
            if "base_channels" in flat or "channel_mults" in flat:
                lab["channels"] = [flat.get("base_channels", 32) * m for m in flat.get("channel_mults", (1, 2, 2))]
                notes.append("model.base_channels x model.channel_mults -> model.lab_unet.channels")
            if "num_res_blocks" in flat:
                lab["num_residual_layers"] = flat["num_res_blocks"]
                notes.append("model.num_res_blocks -> model.lab_unet.num_residual_layers")
            if "embed_dim" in flat:
                lab["embed_dim"] = flat["embed_dim"]
                notes.append("model.embed_dim -> model.lab_unet.embed_dim")
        else:
            for key, value in flat.items():
                if key == "embed_dim":
                    model.pop(key)
                    notes.append("model.embed_dim (lab_unet only) dropped")
                else:
                    move("model", key, ("model", arch if arch != "lab_unet" else "unet", key), value)
    flow = tables.get("flow")
    if isinstance(flow, dict):
        for key in [k for k in flow if k.startswith("mean_flow_") and not isinstance(flow[k], dict)]:
            move("flow", key, ("flow", "mean_flow", key[len("mean_flow_"):]), flow[key])
    data = tables.get("data")
    if isinstance(data, dict):
        for key in [k for k in _FLAT_FOLDER if k in data and not isinstance(data[k], dict)]:
            move("data", key, ("data", "folder", key), data[key])
    return Migrated(tables, notes)


def parse_literal(text: str) -> Any:
    """A command-line value as TOML (1e-3, true, [1, 2]); anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def validate(cfg: RunConfig) -> None:
    """Choices and ranges that a type check cannot see; each variant's options validate themselves."""
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
    need(flow.logit_normal_std > 0, f"flow.logit_normal_std must be > 0, got {flow.logit_normal_std}")
    need(sample.num_steps >= 1, f"sample.num_steps must be >= 1, got {sample.num_steps}")
    need(sample.num_images >= 1, f"sample.num_images must be >= 1, got {sample.num_images}")
    need(sample.sde_epsilon >= 0, f"sample.sde_epsilon must be >= 0, got {sample.sde_epsilon}")
    _validate_variants(cfg)
    need(sample.guidance_scale == 1.0 or cfg.model.class_conditional,
         f"sample.guidance_scale = {sample.guidance_scale} needs a class-conditional model; "
         "set model.class_conditional = true or guidance_scale = 1")


def _validate_variants(cfg: RunConfig) -> None:
    """The selected backbone, objective and data source check their own sections (and how they fit together)."""
    for name in ("model", "flow", "data"):
        section = getattr(cfg, name)
        chosen = getattr(section, section.selector)
        stray = sorted(section.__dict__.get("_set_variants", set()) - {chosen})
        if stray:
            raise ConfigError(f"[{name}.{stray[0]}] is set but {name}.{section.selector} = {chosen!r}: its keys apply only to "
                              f"{name}.{section.selector} = {stray[0]!r}; remove them or set {name}.{section.selector} = {stray[0]!r}")
    from imgflow.core import solver_info
    from imgflow.data import dataset_entry
    from imgflow.nn.backbones import backbone, backbones
    from imgflow.training.objectives import objective_entry

    arch, model_options = backbone(cfg.model.arch), cfg.model.options
    try:
        arch.validate(model_options)
    except ValueError as exc:
        raise ConfigError(f"[model.{arch.name}] {exc}") from None
    objective = objective_entry(cfg.flow.objective)
    try:
        objective.validate(cfg.flow.options, cfg)
    except ValueError as exc:
        raise ConfigError(f"[flow.{objective.name}] {exc}" if not str(exc).startswith(("flow.", "model.", "sample.")) else str(exc)) from None
    if objective.kind != arch.kind:
        fitting = [n for n, b in backbones().items() if b.kind == objective.kind]
        raise ConfigError(f"flow.objective = {objective.name!r} trains {'an autoencoder' if objective.kind == 'autoencoder' else 'a flow model'}, "
                          f"which model.arch = {arch.name!r} is not; use model.arch = {' | '.join(fitting)}"
                          + ("" if objective.kind == "autoencoder" else " (an autoencoder is trained with flow.objective = 'autoencoder')"))
    if objective.flow_map and not arch.flow_map:
        raise ConfigError(f"flow.objective = {objective.name!r} trains a flow map u(x, t, r), which model.arch = {arch.name!r} "
                          f"cannot take (no second time); use one of: {', '.join(n for n, b in backbones().items() if b.flow_map)}")
    if cfg.flow.prediction not in objective.predictions:
        raise ConfigError(f"flow.objective = {objective.name!r} trains flow.prediction {' or '.join(objective.predictions)}; "
                          f"set flow.prediction = {objective.predictions[0]!r}")
    if solver_info(cfg.sample.solver).flow_map and not objective.flow_map:
        raise ConfigError(f"sample.solver = {cfg.sample.solver!r} needs a flow-map model (flow.objective = 'mean_flow'); flow.objective = "
                          f"{objective.name!r} trains a velocity: use euler or another ODE solver")
    source = dataset_entry(cfg.data.dataset)
    try:
        source.validate(cfg.data, cfg.data.options)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


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
    overrides = dict(overrides or {})
    for dotted in [k for k in overrides if k in ("model.arch", "flow.objective", "data.dataset")]:
        # a selector first, into the file's tables: the section's other keys may belong to the entry it selects
        section, key = dotted.split(".")
        value = overrides.pop(dotted)
        set_value(cfg, dotted, value, "command line")
        table = raw.get(section) if isinstance(raw.get(section), dict) else {}
        raw = {**raw, section: {**table, key: value}}
    apply_tables(cfg, raw, source)
    for dotted, value in overrides.items():
        set_value(cfg, dotted, value, "command line")
    validate(cfg)
    return cfg


def add_override_arguments(parser: typing.Any, sections: typing.Sequence[str] = tuple(SECTIONS)) -> None:
    """Add one `--section.key VALUE` option per config key (of the given sections) to an argparse parser."""
    defaults = RunConfig()
    for dotted in all_keys(defaults):
        section = dotted.split(".")[0]
        if section not in sections:
            continue
        obj, key = _target(defaults, dotted, "defaults")
        parser.add_argument(
            f"--{dotted}",
            dest=f"override:{dotted}",
            metavar="VALUE",
            default=None,
            help=f"override {dotted} (default {getattr(obj, key)!r})",
        )


def overrides_from_args(args: typing.Any) -> dict[str, Any]:
    """Collect the `--section.key` values that were given, parsed as TOML literals."""
    out = {}
    for name, value in vars(args).items():
        if name.startswith("override:") and value is not None:
            out[name.split(":", 1)[1]] = parse_literal(value)
    return out
