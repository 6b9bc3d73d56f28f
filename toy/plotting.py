"""Matplotlib helpers for the lab's pictures: samples, contours, trajectories, fields.

Scripts draw with the Agg backend (files, no window); inside a Jupyter kernel the notebook's own (inline)
backend is kept, so `plt.show()` shows the figure in the notebook.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

__all__ = [
    "contour",
    "grid_points",
    "heatmap",
    "plt",
    "quiver",
    "save_figure",
    "scatter",
    "subplots",
    "trajectories",
]

Bounds = tuple[float, float, float, float]  # xmin, xmax, ymin, ymax


def subplots(ncols: int, nrows: int = 1, size: float = 4.0, **kwargs):
    """A (nrows, ncols) figure of size-by-size panels; axes always returned as a flat array."""
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False, **kwargs)
    return fig, axes.reshape(-1)


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Tight-layout, write a PNG, close the figure; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    # tight_layout leaves a placeholder layout engine on the figure, and savefig runs a full (unrendered)
    # draw for any engine before the real one; the placeholder moves nothing, so dropping it gives the
    # same pixels (compared, all 13 figures of a run) for one draw instead of two (~35 % of savefig)
    fig.set_layout_engine(None)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def grid_points(bounds: Bounds, n: int) -> tuple[Tensor, np.ndarray, np.ndarray]:
    """An n x n grid over bounds: points (n*n, 2) and the meshgrid arrays X, Y (n, n)."""
    xs = torch.linspace(bounds[0], bounds[1], n)
    ys = torch.linspace(bounds[2], bounds[3], n)
    gx, gy = torch.meshgrid(xs, ys, indexing="xy")
    pts = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    return pts, gx.numpy(), gy.numpy()


def scatter(ax, x: Tensor, max_points: int = 4000, s: float = 2.0, alpha: float = 0.4, **kwargs) -> None:
    """Scatter the first max_points rows of x (B, 2)."""
    x = x[:max_points].detach().cpu().numpy()
    ax.scatter(x[:, 0], x[:, 1], s=s, alpha=alpha, **kwargs)


def contour(
    ax,
    log_density: Callable[[Tensor], Tensor],
    bounds: Bounds,
    n: int = 150,
    levels: int = 15,
    filled: bool = False,
    cmap: str = "Blues",
    **kwargs,
) -> None:
    """Contours of a log density (B, 2) -> (B,) over bounds."""
    pts, gx, gy = grid_points(bounds, n)
    with torch.no_grad():
        z = log_density(pts).reshape(n, n).detach().cpu().numpy()
    z = np.where(np.isfinite(z), z, np.nanmin(np.where(np.isfinite(z), z, np.nan)) - 1.0)
    (ax.contourf if filled else ax.contour)(gx, gy, z, levels=levels, cmap=cmap, **kwargs)


def trajectories(ax, traj: Tensor, num: int = 30, color: str | None = None, lw: float = 0.7, alpha: float = 0.6) -> None:
    """Draw num trajectories of traj (B, T, 2), marking start (o) and end (x)."""
    tr = traj[:num].detach().cpu().numpy()
    for i in range(tr.shape[0]):
        ax.plot(tr[i, :, 0], tr[i, :, 1], lw=lw, alpha=alpha, color=color)
    ax.scatter(tr[:, 0, 0], tr[:, 0, 1], s=8, marker="o", color="k", zorder=3)
    ax.scatter(tr[:, -1, 0], tr[:, -1, 1], s=12, marker="x", color="r", zorder=3)


def quiver(ax, field: Callable[[Tensor], Tensor], bounds: Bounds, n: int = 20, **kwargs) -> None:
    """Arrows of a field (B, 2) -> (B, 2) on an n x n grid."""
    pts, gx, gy = grid_points(bounds, n)
    with torch.no_grad():
        v = field(pts).detach().cpu().numpy()
    ax.quiver(gx, gy, v[:, 0].reshape(n, n), v[:, 1].reshape(n, n), **kwargs)


def heatmap(ax, values: Callable[[Tensor], Tensor], bounds: Bounds, n: int = 100, cmap: str = "viridis", **kwargs):
    """Colour map of a scalar function (B, 2) -> (B,) over bounds; returns the image for a colorbar."""
    pts, _, _ = grid_points(bounds, n)
    with torch.no_grad():
        z = values(pts).reshape(n, n).detach().cpu().numpy()
    return ax.imshow(z, origin="lower", extent=bounds, cmap=cmap, aspect="auto", **kwargs)
