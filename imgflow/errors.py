"""The errors a person can fix, at the bottom of the layers so that every module may raise them."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration problem, with a message that names the key and the fix."""


class CheckpointError(ValueError):
    """A checkpoint or model folder that is missing, unreadable or does not fit the model."""


__all__ = ["CheckpointError", "ConfigError"]
