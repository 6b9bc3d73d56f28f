"""Metrics of a training run: always a JSONL file; also any tracker accelerate supports (train.log_with).

`metrics.jsonl` gets one JSON object per logged step (loss, loss by time bin, learning rate,
gradient norm, throughput); it is the record the plotting and comparison scripts read. With
train.log_with set, the same scalars go to accelerate's trackers (TensorBoard, W&B, MLflow,
...) through `Accelerator.log`; no tracker is written by hand here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from imgflow.config import ConfigError

#: pip package of each accelerate tracker (for the message when one is missing)
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet-ml", "aim": "aim",
                    "clearml": "clearml", "dvclive": "dvclive", "swanlab": "swanlab", "trackio": "trackio"}


def check_tracker_available(log_with: str) -> None:
    """One-line ConfigError when train.log_with names a tracker whose package is not installed."""
    if log_with in ("none", "all"):
        return
    from accelerate.tracking import get_available_trackers

    if log_with not in {str(t.value) for t in get_available_trackers()}:
        raise ConfigError(f"train.log_with = {log_with!r} needs the {log_with} package, which is not installed: "
                          f"`pip install {TRACKER_PACKAGES.get(log_with, log_with)}`, or set train.log_with = 'none'")


def flat_config(cfg_dict: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """{'section.key': value} with lists as strings: what trackers accept as hyperparameters."""
    out = {}
    for section, values in cfg_dict.items():
        for key, value in values.items():
            if isinstance(value, dict):  # a [section.variant] table
                out.update(flat_config({f"{section}.{key}": value}))
            else:
                out[f"{section}.{key}"] = value if isinstance(value, (int, float, str, bool, type(None))) else json.dumps(value)
    return {k: ("none" if v is None else v) for k, v in out.items()}


def scalar_metrics(record: dict[str, Any], time_bins: int) -> dict[str, float]:
    """The record as flat scalars for trackers: loss_by_t becomes loss_by_t/0.05, loss_by_t/0.15, ..."""
    out: dict[str, float] = {}
    for key, value in record.items():
        if key == "step":
            continue
        if key == "loss_by_t":
            for i, v in enumerate(value):
                if v is not None and math.isfinite(v):
                    out[f"loss_by_t/{(i + 0.5) / time_bins:.3g}"] = v
        elif isinstance(value, (int, float)):
            out[key] = value
    return out


class MetricsLog:
    """Append one JSON object per logged step to <run_dir>/metrics.jsonl."""

    def __init__(self, run_dir: Path, resume_step: int = 0) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._trim_after(resume_step)
        self.file = self.path.open("a")

    def _trim_after(self, step: int) -> None:
        """A resumed run re-logs the steps after its checkpoint: drop the old lines for them."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of <run_dir>/metrics.jsonl, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []
