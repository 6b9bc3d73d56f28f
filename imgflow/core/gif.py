"""Animated GIFs written by Pillow (no ffmpeg), shared by the 2-D lab's particle animations
(`toy.animation`) and the image sampler's denoising animations (`imgflow.animation`)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from imgflow.files import atomic_write_bytes

if TYPE_CHECKING:
    from PIL import Image


def save_gif(frames: Sequence[Image.Image], path: str | Path, *, fps: float = 10.0, hold_last: float = 1.0,
             loop: int = 0) -> Path:
    """Write frames as an animated GIF (atomically: a temporary file, then a rename); returns the path.

    fps: frames per second; hold_last: extra seconds the last frame stays on screen; loop: 0 repeats
    forever, n plays n + 1 times. Every frame must have the first one's size.
    """
    if not frames:
        raise ValueError("save_gif needs at least one frame")
    if not fps > 0 or not hold_last >= 0:
        raise ValueError(f"fps must be > 0 and hold_last >= 0, got fps={fps} and hold_last={hold_last}")
    size = frames[0].size
    bad = next((i for i, f in enumerate(frames) if f.size != size), None)
    if bad is not None:
        raise ValueError(f"GIF frames must share one size: frame 0 is {size}, frame {bad} is {frames[bad].size}")
    frame_ms = max(20, round(1000.0 / fps))  # viewers show delays under 20 ms as 100 ms
    durations = [frame_ms] * len(frames)
    durations[-1] += round(1000.0 * hold_last)
    first, *rest = [f if f.mode in ("L", "P", "RGB") else f.convert("RGB") for f in frames]
    buf = io.BytesIO()
    first.save(buf, format="GIF", save_all=True, append_images=rest, duration=durations, loop=loop, disposal=1)
    path = Path(path)
    atomic_write_bytes(path, buf.getvalue())
    return path


__all__ = ["save_gif"]
