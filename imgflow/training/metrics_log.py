"""Metrics of a training run: a JSONL file, and TensorBoard when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Append one JSON object per logged step to <run_dir>/metrics.jsonl (and to TensorBoard)."""

    def __init__(self, run_dir: Path, resume_step: int = 0) -> None:
        self.path = run_dir / "metrics.jsonl"
        self._trim_after(resume_step)
        self.file = self.path.open("a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step or None)
        except Exception:  # noqa: BLE001 - tensorboard is optional
            self.tb = None

    def _trim_after(self, step: int) -> None:
        """A resumed run re-logs the steps after its checkpoint: drop the old lines for them."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def write(self, record: dict[str, Any]) -> None:
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The records of <run_dir>/metrics.jsonl, in order."""
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []
