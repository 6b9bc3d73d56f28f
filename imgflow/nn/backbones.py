"""The backbone registry: every network the pipeline trains is one entry here.

A backbone is any `nn.Module` called `model(x, t, y=None, r=None)` (x (B, C, H, W), time t (B,),
labels y (B,) whose index num_classes is the null label of guidance, r the second time of a flow
map) that conditions through `imgflow.nn.conditioning.Conditioning`. Its entry says

- `options`: the dataclass of its own config section `[model.<name>]` (defaults for every key;
  a `validate(image_size=None)` method raising ValueError for values out of range or, given the side of
  its inputs, a size it cannot take: the one validation of the backbone, which its network's
  constructor runs too);
- `build(options, built_for)`: the network for data and an objective described by `BuiltFor`;
- what it can do: `labels` ("optional": conditional when the data has classes and the config asks;
  "always": the network always takes labels; "never"), `flow_map` (it can take a second time), and
  `flow_map_keys` (option keys that only a flow map reads, such as second_time);
- `kind`: "flow" for the networks above; "autoencoder" for a network called `model(x) -> (reconstruction,
  mean, logvar)` with `encode`/`decode` (imgflow.nn.autoencoder), which only autoencoder objectives train.

Adding a backbone is one module (its network, options and entry) and one `register_backbone`
line (the project's own are registered in imgflow/nn/__init__.py); nothing else in the project branches on its name.
This module is a leaf: it imports nothing of imgflow but the generic registry, so every network imports
`Backbone` from here and the registry never imports a network.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from imgflow.core.registry import Registry


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
    description: str = ""
    kind: str = "flow"  # flow | autoencoder
    flow_map_keys: tuple[str, ...] = ()

    def validate(self, options: Any, image_size: int | None = None) -> None:
        """ValueError when the options are out of range or (with image_size) cannot take images of that size."""
        check = getattr(options, "validate", None)
        if check is not None:
            check(image_size)

    def conditional(self, class_conditional: bool, num_classes: int) -> bool:
        """Whether the network takes labels for data with num_classes classes."""
        if self.kind != "flow" or self.labels == "never":
            return False
        return self.labels == "always" or (class_conditional and num_classes > 0)


#: what a network is: a (velocity / noise / flow-map) field model(x, t, y, r), or an autoencoder
KINDS = ("flow", "autoencoder")

#: every backbone by name (model.arch); the project's own are registered where imgflow.nn is assembled
BACKBONES: Registry[Backbone] = Registry("backbone", "model.arch")


def register_backbone(entry: Backbone, *, replace: bool = False) -> Backbone:
    """Add a backbone to the registry (model.arch = entry.name); returns it."""
    if not dataclasses.is_dataclass(entry.options):
        raise TypeError(f"backbone {entry.name!r}: options must be a dataclass (its [model.{entry.name}] section)")
    if entry.labels not in ("optional", "always", "never"):
        raise ValueError(f"backbone {entry.name!r}: labels must be 'optional', 'always' or 'never', got {entry.labels!r}")
    if entry.kind not in KINDS:
        raise ValueError(f"backbone {entry.name!r}: kind must be one of {', '.join(KINDS)}, got {entry.kind!r}")
    return BACKBONES.register(entry.name, entry, replace=replace)


def unregister_backbone(name: str) -> None:
    BACKBONES.unregister(name)


def backbone(name: str) -> Backbone:
    """The entry of model.arch = name, or an UnknownNameError (a ValueError) listing the registered ones."""
    return BACKBONES[name]


def backbones() -> Registry[Backbone]:
    """Every registered backbone, by name (the built-in ones first)."""
    return BACKBONES
