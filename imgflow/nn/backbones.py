"""The backbone registry: every network the pipeline trains is one entry here.

A backbone is any `nn.Module` called `model(x, t, y=None, r=None)` (x (B, C, H, W), time t (B,),
labels y (B,) whose index num_classes is the null label of guidance, r the second time of a flow
map) that conditions through `imgflow.nn.conditioning.Conditioning`. Its entry says

- `options`: the dataclass of its own config section `[model.<name>]` (defaults for every key;
  a `validate()` method raising ValueError for values out of range);
- `build(options, built_for)`: the network for data and an objective described by `BuiltFor`;
- what it can do: `labels` ("optional": conditional when the data has classes and the config asks;
  "always": the network always takes labels; "never"), `flow_map` (it can take a second time), and
  `check_fits(options, image_size)` (ValueError when it cannot take images of that size);
- `kind`: "flow" for the networks above; "autoencoder" for a network called `model(x) -> (reconstruction,
  mean, logvar)` with `encode`/`decode` (imgflow.nn.autoencoder), which only autoencoder objectives train.

Adding a backbone is one module (its network, options and entry) and one `register_backbone`
line (or one line in `_builtin` below); nothing else in the project branches on its name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


@dataclass(frozen=True)
class BuiltFor:
    """What a backbone is built for: the data's shape and classes, and whether the objective needs a flow map.

    num_classes: None for an unconditional network (labels are then never passed).
    """

    channels: int
    image_size: int
    num_classes: int | None = None
    flow_map: bool = False


@dataclass(frozen=True)
class Backbone:
    """A registry entry: see the module docstring."""

    name: str
    options: type
    build: Callable[[Any, BuiltFor], nn.Module]
    labels: str = "optional"  # optional | always | never
    flow_map: bool = False
    check_fits: Callable[[Any, int], None] | None = None
    description: str = ""
    kind: str = "flow"  # flow | autoencoder

    def validate(self, options: Any, image_size: int | None = None) -> None:
        """ValueError when the options are out of range or (with image_size) cannot take images of that size."""
        check = getattr(options, "validate", None)
        if check is not None:
            check()
        if image_size is not None and self.check_fits is not None:
            self.check_fits(options, image_size)

    def conditional(self, class_conditional: bool, num_classes: int) -> bool:
        """Whether the network takes labels for data with num_classes classes."""
        if self.kind != "flow" or self.labels == "never":
            return False
        return self.labels == "always" or (class_conditional and num_classes > 0)


#: what a network is: a (velocity / noise / flow-map) field model(x, t, y, r), or an autoencoder
KINDS = ("flow", "autoencoder")

BACKBONES: dict[str, Backbone] = {}


def register_backbone(entry: Backbone, *, replace: bool = False) -> Backbone:
    """Add a backbone to the registry (model.arch = entry.name); returns it."""
    if not dataclasses.is_dataclass(entry.options):
        raise TypeError(f"backbone {entry.name!r}: options must be a dataclass (its [model.{entry.name}] section)")
    if entry.labels not in ("optional", "always", "never"):
        raise ValueError(f"backbone {entry.name!r}: labels must be 'optional', 'always' or 'never', got {entry.labels!r}")
    if entry.kind not in KINDS:
        raise ValueError(f"backbone {entry.name!r}: kind must be one of {', '.join(KINDS)}, got {entry.kind!r}")
    if entry.name in BACKBONES and not replace:
        raise ValueError(f"a backbone named {entry.name!r} is already registered; pick another name or pass replace=True")
    BACKBONES[entry.name] = entry
    return entry


def unregister_backbone(name: str) -> None:
    BACKBONES.pop(name, None)


def backbone(name: str) -> Backbone:
    """The entry of model.arch = name, or a ValueError listing the registered ones."""
    _builtin()
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; registered: {', '.join(BACKBONES)}") from None


def backbones() -> dict[str, Backbone]:
    """Every registered backbone, by name (the built-in ones first)."""
    _builtin()
    return BACKBONES


_loaded = False


def _builtin() -> None:
    """Register the project's own backbones (on first use, so that importing this module stays cheap)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from imgflow.nn.autoencoder import AUTOENCODER
    from imgflow.nn.dit import DIT
    from imgflow.nn.lab_unet import LAB_UNET
    from imgflow.nn.unet import UNET

    for entry in (UNET, LAB_UNET, DIT, AUTOENCODER):
        if entry.name not in BACKBONES:
            BACKBONES[entry.name] = entry
