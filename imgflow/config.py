"""Run configuration: TOML files, command-line overrides and validation.

A run is described by one TOML file with the sections [run], [data], [model], [flow],
[train] and [sample]; every key has a default here. Four sections pick a registry entry whose
own keys live in a sub-table: [data.<dataset>], [model.<arch>], [flow.<objective>] and
[sample.<solver>]. Any key can be overridden from the command line as `--section.key value`.

Unknown keys, wrong types, out-of-range values and keys that would have no effect (data.resize
for a folder, flow.schedule for an autoencoder, a second_time for a velocity model, ...) are
rejected with a one-line `ConfigError` before any work starts. A config imgflow wrote itself
(a checkpoint's, a run folder's config.json) is read with `RunConfig.from_json`: keys of an
earlier layout are mapped (imgflow.config_migrations) and keys that had no effect where it was
written are dropped.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgflow.config_migrations import migrate_flat, migrate_variant_keys
from imgflow.config_rules import CHOICES, forget_unused_keys, selectors, unused_keys, validate
from imgflow.core import SOLVERS
from imgflow.core.registry import did_you_mean
from imgflow.core.sampling_settings import SamplingSettings
from imgflow.data.sources import DATASETS
from imgflow.errors import ConfigError
from imgflow.nn.backbones import BACKBONES
from imgflow.objectives import OBJECTIVES, FlowSettings
from imgflow.recipes import config_names, config_path, is_bare_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class VariantSection:
    """A section whose selector key picks a registry entry with options of its own, in `[section.<name>]`.

    `options` is the options dataclass of the selected entry (defaults until a key of it is set);
    `variant(name)` gives any registered entry's options. Only the selected entry's options are
    validated, written to JSON and used.
    """

    selector: typing.ClassVar[str]
    registry: typing.ClassVar[Any]  # name -> entry with an `options` dataclass

    def variant(self, name: str) -> Any:
        store = self.__dict__.setdefault("_variants", {})
        if name not in store:
            store[name] = self.registry[name].options()
        return store[name]

    @property
    def options(self) -> Any:
        return self.variant(getattr(self, self.selector))

    @property
    def selected(self) -> str:
        return getattr(self, self.selector)

    def variant_names(self) -> tuple[str, ...]:
        return tuple(self.registry)

    def set_option(self, variant: str, key: str, value: Any) -> None:
        """Set an entry's own key (frozen options, such as a solver's, are replaced by a changed copy)."""
        options = self.variant(variant)
        if options.__dataclass_params__.frozen:
            self.__dict__["_variants"][variant] = dataclasses.replace(options, **{key: value})
        else:
            setattr(options, key, value)
        self.__dict__.setdefault("_set_variants", set()).add(variant)

    def set_variants(self) -> set[str]:
        """The entries whose own keys were set (by a file, the command line or `set_option`)."""
        return set(self.__dict__.get("_set_variants", ()))

    def __getattr__(self, name: str) -> Any:
        """cfg.model.unet, cfg.flow.mean_flow, cfg.data.folder: a registered entry's options by its name."""
        if name.startswith("_"):
            raise AttributeError(name)
        if name in type(self).registry:
            return self.variant(name)
        raise AttributeError(f"{type(self).__name__} has no key or section {name!r}")


@dataclass
class RunSection:
    name: str = "run"
    output_dir: str = "runs/run"
    seed: int = 0


@dataclass
class DataSection(VariantSection):
    """[data]; the options of a data source live in [data.<dataset>] (e.g. [data.folder] path = "...")."""

    selector: typing.ClassVar[str] = "dataset"
    registry: typing.ClassVar[Any] = DATASETS
    dataset: str = "mnist"  # folder (your images at data.folder.path) or a torchvision dataset (mnist, fashion_mnist, cifar10, ...)
    data_root: str = "data"  # where torchvision datasets live
    image_size: int = 28  # 28 keeps MNIST as is; 32 pads (or resizes, see resize) it
    resize: bool = False  # torchvision data: True = bilinear resize to image_size (the course lab); False = pad with background
    download: bool = True  # torchvision data: download where a network exists
    hflip: bool = False  # random horizontal flips (datasets whose classes survive a mirror image)
    # latent training: an autoencoder checkpoint (file or run folder) or a diffusers AutoencoderKL (folder or Hub repo id)
    autoencoder: str = ""  # the data is encoded once
    latent_cache_dir: str = ""  # where encoded datasets are cached (default ~/.cache/imgflow/latents)


@dataclass
class ModelSection(VariantSection):
    """[model]; the network's own keys live in [model.<arch>] (e.g. [model.unet] base_channels = 16)."""

    selector: typing.ClassVar[str] = "arch"
    registry: typing.ClassVar[Any] = BACKBONES
    arch: str = "unet"  # a registered backbone: unet | lab_unet | dit | ...
    class_conditional: bool = True  # take class labels when the data has them (guidance needs it)


@dataclass
class FlowSection(VariantSection):
    """[flow]; an objective's own keys live in [flow.<objective>] (e.g. [flow.mean_flow] guidance = 1.5)."""

    selector: typing.ClassVar[str] = "objective"
    registry: typing.ClassVar[Any] = OBJECTIVES
    # flow_matching (a velocity model) | mean_flow (a flow map for 1-2 step sampling) | mean_flow_distillation |
    # lagrangian_distillation (a flow map from a teacher) | autoencoder
    objective: str = "flow_matching"
    schedule: str = "linear"  # linear (linear path) | cosine | sqrt (Gaussian paths)
    prediction: str = "velocity"  # velocity | noise
    loss_reduction: str = "mean"  # mean (per-dim) | sum (per-sample sum of squares)
    label_dropout: float = 0.1

    def settings(self) -> FlowSettings:
        """The typed view an objective reads."""
        return FlowSettings(self.schedule, self.prediction, self.loss_reduction)


@dataclass
class TrainSection:
    steps: int = 10_000
    init_from: str = ""  # start from this checkpoint's weights (file or run folder; a flow map from a velocity model); "" = from scratch
    max_minutes: float = 0.0  # wall-clock budget; 0 = none
    batch_size: int = 128  # global batch per optimiser step (all processes x accumulation)
    grad_accum: int = 1  # micro-batches per process and step; or set micro_batch, which decides it for any process count
    micro_batch: int = 0  # per-process rows of one forward pass; > 0 sets grad_accum = batch_size / (processes x micro_batch)
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


_SAMPLING = SamplingSettings()


@dataclass
class SampleSection(VariantSection):
    """[sample]: the run's default sampler (its grids, and what `Sampler.from_checkpoint` uses unless told otherwise);
    a solver's own settings live in [sample.<solver>] (e.g. [sample.adaptive] rtol = 1e-5). `settings()` is the one
    `SamplingSettings` these keys describe."""

    selector: typing.ClassVar[str] = "solver"
    registry: typing.ClassVar[Any] = SOLVERS
    solver: str = _SAMPLING.solver  # euler | midpoint | heun | rk4 | adaptive | euler_maruyama | flow_map | consistency
    num_steps: int = _SAMPLING.steps
    time_grid: str = _SAMPLING.time_grid  # auto (the solver's default) | uniform | late (denser near t = 1)
    guidance_scale: float = _SAMPLING.guidance
    num_images: int = 64
    seed: int = 0

    def settings(self) -> SamplingSettings:
        return SamplingSettings(self.solver, self.num_steps, self.time_grid, self.guidance_scale, self.options)


@dataclass
class RunConfig:
    run: RunSection = field(default_factory=RunSection)
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    flow: FlowSection = field(default_factory=FlowSection)
    train: TrainSection = field(default_factory=TrainSection)
    sample: SampleSection = field(default_factory=SampleSection)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """{'section': {'key': value, '<selected variant>': {'key': value}}}, as a TOML file would nest it; keys that have no
        effect for the selected entries (`unused_keys`) are left out, so the result reads back strictly."""
        unused = unused_keys(self)
        out: dict[str, dict[str, Any]] = {}
        for f in dataclasses.fields(self):
            obj = getattr(self, f.name)
            out[f.name] = {k: v for k, v in dataclasses.asdict(obj).items() if f"{f.name}.{k}" not in unused}
            if isinstance(obj, VariantSection):
                own = {k: v for k, v in dataclasses.asdict(obj.options).items() if f"{f.name}.{obj.selected}.{k}" not in unused}
                if own:
                    out[f.name][obj.selected] = own
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, raw: dict[str, Any], source: str = "config", lenient: bool = False, written: bool = False) -> RunConfig:
        """Build and validate from {'section': {'key': value}}; unknown keys are errors.

        written: a config imgflow wrote (a checkpoint's or a run folder's): keys that had no effect where it was written
        are dropped. lenient: for reading what an older or newer version wrote: unknown keys are dropped too, and
        nothing is range-checked.
        """
        cfg = cls()
        apply_tables(cfg, raw, source, lenient=lenient, written=written or lenient)
        if not lenient:
            validate(cfg)
        return cfg

    @classmethod
    def from_json(cls, text: str, source: str = "checkpoint metadata", lenient: bool = False) -> RunConfig:
        """A config imgflow wrote (to_json), as it reads today."""
        return cls.from_dict(json.loads(text), source, lenient, written=True)


SECTIONS = [f.name for f in dataclasses.fields(RunConfig)]
#: the selector key of each variant section: {'data': 'data.dataset', 'model': 'model.arch', 'flow': 'flow.objective', 'sample': 'sample.solver'}
SELECTORS = selectors(RunConfig())


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


# --- reading values -------------------------------------------------------------------------------


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
        return ConfigError(f"unknown config key {dotted!r} (from {source}){did_you_mean(dotted, all_keys(cfg))}")

    if parts[0] not in SECTIONS or len(parts) not in (2, 3) or not all(parts):
        raise unknown()
    obj = getattr(cfg, parts[0])
    if len(parts) == 3:
        if not isinstance(obj, VariantSection) or parts[1] not in obj.variant_names():
            raise unknown()
        obj = obj.variant(parts[1])
    if parts[-1] not in [f.name for f in dataclasses.fields(obj)]:
        raise unknown()
    return obj, parts[-1]


def _set(cfg: RunConfig, dotted: str, value: Any, source: str) -> None:
    obj, key = _target(cfg, dotted, source)
    value = coerce(value, _field_type(obj, key), dotted, source)
    parts = dotted.split(".")
    if len(parts) == 3:
        getattr(cfg, parts[0]).set_option(parts[1], key, value)
    else:
        setattr(obj, key, value)


def _selected(cfg: RunConfig) -> dict[str, str]:
    return {section: getattr(cfg, section).selected for section in SELECTORS}


def _migrate(tables: dict[str, Any], selected: dict[str, str], source: str, written: bool, quiet: bool) -> dict[str, Any]:
    """Tables of an earlier layout as today's (one note line unless quiet); a key stranded under another variant is
    dropped from a config imgflow wrote and refused from any other."""
    flat = migrate_flat(tables, selected)
    moved = migrate_variant_keys(flat.tables, selected)
    notes = flat.notes + moved.notes
    if notes and not quiet:
        _note(notes, source)
    if moved.stranded and not written:
        dotted, variant = moved.stranded[0]
        section, key = dotted.split(".")
        selector = SELECTORS[section]
        raise ConfigError(f"config key {dotted} (from {source}) has no effect with {selector} = {selected[section]!r}: it is "
                          f"[{section}.{variant}] {key} now and applies only to {selector} = {variant!r}; remove it")
    return moved.tables


def set_value(cfg: RunConfig, dotted: str, value: Any, source: str = "command line") -> None:
    """Set 'section.key' (or 'section.variant.key') on cfg after checking that the key exists and the type fits.

    A key of an earlier layout (model.base_channels, flow.mean_flow_guidance, data.path, flow.time_sampling,
    sample.rtol, ...) is set where it lives now, with a one-line note on stderr.
    """
    parts = dotted.split(".")
    if len(parts) == 2:
        tables = _migrate({parts[0]: {parts[1]: value}}, _selected(cfg), source, written=False, quiet=False)
        for new_dotted, new_value in flatten_tables(tables):
            _set(cfg, new_dotted, new_value, source)
        return
    _set(cfg, dotted, value, source)


def flatten_tables(tables: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """[('section.key' or 'section.variant.key', value)] of nested tables."""
    out = []
    for key, value in tables.items():
        if isinstance(value, dict):
            out += flatten_tables(value, f"{prefix}{key}.")
        else:
            out.append((f"{prefix}{key}", value))
    return out


def apply_tables(cfg: RunConfig, raw: dict[str, Any], source: str, lenient: bool = False, written: bool = False) -> None:
    """Set every key of {'section': {'key': value, 'variant': {'key': value}}} on cfg (type-checked, not yet validated).

    Files of an earlier layout are mapped to today's sections first (one note line on stderr, except for a config
    imgflow wrote). written: keys that had no effect are dropped. lenient: unknown sections and keys are dropped too.
    """
    for section, values in raw.items():
        if section not in SECTIONS:
            if lenient:
                continue
            raise ConfigError(f"unknown config section [{section}] in {source}{did_you_mean(section, SECTIONS)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {source} must be a table of keys, got {type(values).__name__}")
    selected = dict(_selected(cfg))
    for section, dotted in SELECTORS.items():
        value = raw.get(section, {}).get(dotted.split(".")[1])
        if isinstance(value, str):
            selected[section] = value
    tables = _migrate({s: v for s, v in raw.items() if s in SECTIONS}, selected, source, written, quiet=written)
    for dotted, value in flatten_tables(tables):
        try:
            _set(cfg, dotted, value, source)
        except ConfigError:
            if not lenient:
                raise
    if written:
        try:
            forget_unused_keys(cfg)
        except ValueError:  # an unknown entry name: validation names it
            if not lenient:
                raise


def _note(notes: list[str], source: str) -> None:
    shown = "; ".join(notes[:6]) + (f"; and {len(notes) - 6} more" if len(notes) > 6 else "")
    print(f"note: {source} uses an earlier config layout of imgflow and still loads; moved: {shown}", file=sys.stderr)


def parse_literal(text: str) -> Any:
    """A command-line value as TOML (1e-3, true, [1, 2]); anything else stays a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def shipped_config(path: Path) -> Path:
    """The shipped config a missing bare name stands for ("mnist", "mnist.toml": imgflow.recipes), else a one-line
    ConfigError saying the file does not exist and that shipped names work."""
    names = config_names()
    stem = path.name.removesuffix(".toml")
    if is_bare_name(path) and stem in names:
        return config_path(stem)
    hint = did_you_mean(stem, names) if is_bare_name(path) else ""
    raise ConfigError(f"config file {path} does not exist; pass a TOML file or a shipped config by name "
                      f"(e.g. --config mnist): {', '.join(names)}{hint}")


def load_config(path: str | Path | None, overrides: dict[str, Any] | None = None) -> RunConfig:
    """Read a TOML file (None: defaults), apply {'section.key': value} overrides, validate.

    A path that does not exist and has no folder part ("mnist", "mnist.toml") names a shipped config (imgflow.recipes).
    """
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        if not p.is_file():
            p = shipped_config(p)
        try:
            raw = tomllib.loads(p.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
        source = str(p)
    cfg = RunConfig()
    overrides = dict(overrides or {})
    for dotted in [k for k in overrides if k in SELECTORS.values()]:
        # a selector first, into the file's tables: the section's other keys may belong to the entry it selects
        section, key = dotted.split(".")
        value = overrides.pop(dotted)
        _set(cfg, dotted, value, "command line")
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


__all__ = ["CHOICES", "SECTIONS", "SELECTORS", "ConfigError", "RunConfig", "SampleSection", "add_override_arguments", "all_keys",
           "apply_tables", "coerce", "flatten_tables", "load_config", "overrides_from_args", "parse_literal", "set_value", "unused_keys",
           "validate"]
