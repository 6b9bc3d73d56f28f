"""SIGINT and SIGTERM as requests to stop cleanly: checkpoint the current step, then exit.

A cluster sends SIGTERM some time before it preempts a job, and Ctrl-C sends SIGINT. While a
`StopRequests` block is active, either signal only sets a flag that the training loop reads
between steps; the loop then writes a checkpoint and raises `TrainingInterrupted`. A second
SIGINT interrupts at once (KeyboardInterrupt), for when the checkpoint itself takes too long.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(RuntimeError):
    """Training stopped on a signal after checkpointing `step` (in `checkpoint`)."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None) -> None:
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint
        self.exit_code = 128 + int(getattr(signal, signal_name, signal.SIGTERM))
        super().__init__(f"stopped by {signal_name} after step {step}; saved {checkpoint}; continue with --resume latest")


class StopRequests:
    """Context manager: SIGINT/SIGTERM set `requested` (the signal's name) instead of killing the process.

    Handlers are only installed from the main thread (Python's rule); elsewhere it is inert.
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> StopRequests:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()
