"""Watch a 2-D simulation happen: particles over time on top of their density and the vector field, as a GIF.

    traj = solver.simulate_with_trajectory(noise, ts)            # (N, T, 2), ts (T,)
    marginals = GaussianMixtureMarginals(mixture, path)
    animate_particles("flow.gif", traj, ts, density=marginals.log_density, field=marginals.velocity)

Frames are drawn with matplotlib (Agg) and written by Pillow (`imgflow.core.gif.save_gif`): no ffmpeg.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from imgflow.core.gif import save_gif
from toy.plotting import Bounds, grid_points, plt

#: log p_t(x): points (M, 2) and a time -> (M,)
LogDensity = Callable[[Tensor, Tensor], Tensor]
#: u_t(x): points (M, 2) and times (M,) -> (M, 2)
Field = Callable[[Tensor, Tensor], Tensor]


def trajectory_bounds(trajectory: Tensor, margin: float = 0.1) -> Bounds:
    """A square box around every state of a (N, T, 2) trajectory (its 0.5 / 99.5 % quantiles, widened by margin)."""
    pts = trajectory.reshape(-1, 2).float()
    pts = pts[:: max(1, pts.shape[0] // 200_000)]  # torch.quantile takes at most 16 M values
    lo, hi = torch.quantile(pts, 0.005, dim=0), torch.quantile(pts, 0.995, dim=0)
    centre, half = (lo + hi) / 2, float((hi - lo).max()) / 2 * (1 + 2 * margin) + 1e-6
    return (float(centre[0]) - half, float(centre[0]) + half, float(centre[1]) - half, float(centre[1]) + half)


def particle_frames(trajectory: Tensor, times: Tensor, *, density: LogDensity | None = None, field: Field | None = None,
                    bounds: Bounds | None = None, max_points: int = 1000, grid: int = 80, arrows: int = 15,
                    size: float = 4.0, dpi: int = 72, title: str = "") -> list[Image.Image]:
    """One RGB frame per time of a trajectory (N, T, 2) with times (T,).

    Each frame shows up to max_points particles at that time over the density: `density(x, t)` (log p_t on a
    grid x grid mesh, filled contours) if given, else a 2-D histogram of all N particles; and the arrows of
    `field(x, t)` on an arrows x arrows mesh if given (e.g. an exact marginal velocity, or a model's).
    """
    if trajectory.dim() != 3 or trajectory.shape[-1] != 2:
        raise ValueError(f"a particle trajectory is (N, T, 2), got shape {tuple(trajectory.shape)}")
    if times.shape != (trajectory.shape[1],):
        raise ValueError(f"times must be ({trajectory.shape[1]},), one per state, got shape {tuple(times.shape)}")
    trajectory = trajectory.detach().float().cpu()
    bounds = bounds or trajectory_bounds(trajectory)
    mesh, gx, gy = grid_points(bounds, grid)
    arrow_pts, ax_, ay_ = grid_points(bounds, arrows)
    fig, ax = plt.subplots(figsize=(size, size), dpi=dpi)
    frames = []
    try:
        for k, t in enumerate(times.tolist()):
            ax.clear()
            x = trajectory[:, k]
            if density is not None:
                with torch.no_grad():
                    z = density(mesh, torch.tensor(t)).reshape(grid, grid).float().numpy()
                z = np.maximum(z, np.nanmax(z) - 12.0)  # 12 nats of dynamic range: the tails fade to one colour
                ax.contourf(gx, gy, z, levels=14, cmap="Blues")
            else:
                ax.hist2d(x[:, 0].numpy(), x[:, 1].numpy(), bins=grid // 2, range=[bounds[:2], bounds[2:]], cmap="Blues")
            if field is not None:
                with torch.no_grad():
                    v = field(arrow_pts, torch.full((arrow_pts.shape[0],), t)).float().numpy()
                ax.quiver(ax_, ay_, v[:, 0].reshape(arrows, arrows), v[:, 1].reshape(arrows, arrows), color="0.25",
                          alpha=0.7, width=0.004)
            shown = x[:max_points].numpy()
            ax.scatter(shown[:, 0], shown[:, 1], s=3, color="tab:red", alpha=0.6, linewidths=0)
            ax.set(xlim=bounds[:2], ylim=bounds[2:], xticks=[], yticks=[], aspect="equal")
            ax.set_title(f"{title}  t = {t:.2f}".strip(), fontsize=10)
            fig.canvas.draw()
            frames.append(Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()))
    finally:
        plt.close(fig)
    return frames


def animate_particles(path: str | Path, trajectory: Tensor, times: Tensor, *, fps: float = 10.0, hold_last: float = 1.0,
                      **frame_kwargs) -> Path:
    """`particle_frames(trajectory, times, **frame_kwargs)` written as a GIF at `path`; returns the path."""
    return save_gif(particle_frames(trajectory, times, **frame_kwargs), path, fps=fps, hold_last=hold_last)


__all__ = ["animate_particles", "particle_frames", "trajectory_bounds"]
