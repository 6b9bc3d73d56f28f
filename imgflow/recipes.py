"""The shipped run configurations: the TOML recipes of imgflow/configs, found by name from a clone or an installed wheel.

    from imgflow import config_path, load_config
    cfg = load_config(config_path("mnist"))        # the file behind `--config configs/mnist.toml` (or `--config mnist`)

The recipes are package data (pyproject's [tool.setuptools.package-data]); a clone's root `configs` is a link to the
same folder, so `--config configs/mnist.toml` and `config_path("mnist")` read one file.
"""

from __future__ import annotations

import difflib
from pathlib import Path

from imgflow.errors import ConfigError

#: the folder of the shipped recipes (inside the package, so a wheel carries it)
CONFIGS = Path(__file__).resolve().parent / "configs"


def config_names() -> list[str]:
    """The names of the shipped configs, sorted ("mnist", "smoke", ...)."""
    return sorted(p.stem for p in CONFIGS.glob("*.toml"))


def config_path(name: str) -> Path:
    """The shipped config file of a name ("mnist" or "mnist.toml"), or a one-line ConfigError listing the names."""
    stem = name[: -len(".toml")] if name.endswith(".toml") else name
    names = config_names()
    if stem in names:
        return CONFIGS / f"{stem}.toml"
    close = difflib.get_close_matches(stem, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ConfigError(f"no shipped config {name!r}; {hint}the package ships: {', '.join(names)}")


def is_bare_name(path: str | Path) -> bool:
    """Whether a --config value is a plain name without a folder part ("mnist", "mnist.toml"): one a shipped config may answer."""
    text = str(path)
    return bool(text) and Path(text).name == text and text not in (".", "..")


__all__ = ["CONFIGS", "config_names", "config_path", "is_bare_name"]
