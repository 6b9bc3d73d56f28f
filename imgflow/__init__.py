"""imgflow: flow matching and diffusion models on one shared core.

    from imgflow import Sampler
    samples = Sampler.from_checkpoint("runs/mnist").sample(20, labels=[3, 7], steps=20)
    samples.save_grid("digits.png")

`imgflow.core` holds the math shared by the 2-D lab (`toy`) and the image pipeline:
schedules, probability paths, conversions between parameterisations, losses, ODE/SDE
dynamics and their solvers. Everything there is shape-agnostic: x is (B, ...) and t is (B,)
or broadcastable. The names below are the public API of the image pipeline; they load on
first use, so `import imgflow.core` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.2.0"

INSTALL = 'from a clone of the repository: pip install -e ".[dev]" (in Colab: !pip install -e /path/to/the/clone)'


def require_version(minimum: str) -> str:
    """This installation's version, or a one-line ImportError naming it, `minimum` and how to install a newer one (the
    labs' first cell calls it)."""

    def parts(version: str) -> tuple[int, ...]:
        return tuple(int(p) for p in version.split(".")[:3] if p.isdigit())

    if parts(__version__) < parts(minimum):
        raise ImportError(f"this notebook needs imgflow >= {minimum}, and {__version__} is installed; update it {INSTALL}")
    return __version__

_EXPORTS = {
    "Sampler": "imgflow.sampler",
    "Samples": "imgflow.samples",
    "SamplingSettings": "imgflow.core.sampling_settings",
    "RunConfig": "imgflow.config",
    "ConfigError": "imgflow.config",
    "load_config": "imgflow.config",
    "config_path": "imgflow.recipes",
    "DataSpec": "imgflow.data",
    "ImageData": "imgflow.data",
    "load_dataset": "imgflow.data",
    "ResolvedRun": "imgflow.resolved_run",
    "resolve_run": "imgflow.resolved_run",
    "Trainer": "imgflow.training.trainer",
    "TrainResult": "imgflow.training.trainer",
    "train": "imgflow.training.trainer",
    "load_checkpoint": "imgflow.checkpoint",
    "evaluate_checkpoint": "imgflow.evaluation.report",
    "EvalReport": "imgflow.evaluation.report",
    "sweep_checkpoint": "imgflow.evaluation.sweep",
    "budget_comparison": "imgflow.experiments.budget",
    "Judge": "imgflow.evaluation.judge",
    "LatentCodec": "imgflow.latents",
    "load_autoencoder": "imgflow.latents",
    "evaluate_autoencoder": "imgflow.evaluation.autoencoder",
    "pretrained_path": "imgflow.pretrained",
    "default_device": "imgflow.devices",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'imgflow' has no attribute {name!r}")
