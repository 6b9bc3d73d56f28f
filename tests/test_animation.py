"""Watching sampling happen: Sampler trajectories, GIFs of image grids and of 2-D particles."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imgflow.animation import image_trajectory_frames, trajectory_strip
from imgflow.config import ConfigError
from imgflow.core.gif import save_gif
from imgflow.resolved_run import build_model
from imgflow.sampler import Sampler, per_sample_noise, trajectory_indices
from tests.image_helpers import blob_images, tiny_config
from toy.animation import particle_frames


@pytest.fixture(scope="module")
def sampler(tmp_path_factory):
    cfg = tiny_config(tmp_path_factory.mktemp("traj"))
    torch.manual_seed(0)
    spec = blob_images(20).spec
    model = build_model(cfg, spec).eval()
    with torch.no_grad():  # the output layer starts at zero (a still field): move it so states differ
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return Sampler(model, cfg, spec)


def test_trajectory_keeps_the_solver_states_and_leaves_the_samples_unchanged(sampler):
    plain = sampler.sample(6, steps=4, solver="heun", time_grid="uniform", seed=3)
    full = sampler.sample(6, steps=4, solver="heun", time_grid="uniform", seed=3, trajectory=True, batch_size=4)
    assert plain.trajectory is None and full.trajectory.shape == (6, 5, 1, 8, 8)
    # batches of 4 vs one of 6: float rounding, kernels sum in another order for another batch size; observed
    # differences ~2e-7. The kept last state is the same computation as the images: bit for bit.
    torch.testing.assert_close(full.images, plain.images, atol=1e-5, rtol=0)
    assert torch.equal(full.trajectory[:, -1], full.images)
    assert torch.equal(full.trajectory[:, 0], per_sample_noise(3, range(6), (1, 8, 8)).clamp(-1, 1))
    assert torch.allclose(full.trajectory_times, torch.linspace(0, 1, 5))
    some = sampler.sample(6, steps=4, solver="heun", time_grid="uniform", seed=3, trajectory=3)
    torch.testing.assert_close(some.trajectory, full.trajectory[:, [0, 2, 4]], atol=1e-5, rtol=0)  # one batch of 6 vs 4 + 2: as above
    assert torch.allclose(some.trajectory_times, torch.tensor([0.0, 0.5, 1.0]))
    # a stochastic sampler's kept states end in the same samples as without them (per-sample Brownian noise)
    sde = dict(steps=4, solver="euler_maruyama", seed=1)
    assert torch.equal(sampler.sample(4, **sde, trajectory=True).trajectory[:, -1], sampler.sample(4, **sde).images)


def test_trajectory_indices_and_bad_requests(sampler):
    grid = torch.linspace(0, 1, 21)
    assert trajectory_indices(grid, 5) == [0, 5, 10, 15, 20] and trajectory_indices(grid[:3], True) == [0, 1, 2]
    assert trajectory_indices(grid, False) is None and trajectory_indices(grid[:11], 2) == [0, 10]
    assert trajectory_indices(grid, [1.0, 0.0, 0.51, 0.52]) == [0, 10, 20]  # nearest states, in time order, once each
    late = sampler.sample(3, steps=4, seed=1, time_grid="uniform", trajectory=[0.5, 1.0])
    assert torch.allclose(late.trajectory_times, torch.tensor([0.5, 1.0])) and torch.equal(late.trajectory[:, -1], late.images)
    for bad in ([], [1.5], ["a"], [True]):
        with pytest.raises(ConfigError, match=r"trajectory times must be .* in \[0, 1\]"):
            sampler.sample(2, steps=4, trajectory=bad)
    for bad in (1, 0, -2, 2.5, "all"):
        with pytest.raises(ConfigError, match="trajectory must be"):
            sampler.sample(2, steps=4, trajectory=bad)
    with pytest.raises(ConfigError, match="more states than the sampler's grid has"):
        sampler.sample(2, steps=4, trajectory=6)
    with pytest.raises(ConfigError, match="carry no trajectory"):
        sampler.sample(2, steps=2).save_gif("never.gif")


def test_gif_frames_are_the_trajectory_grids(sampler, tmp_path):
    samples = sampler.sample(4, steps=3, seed=0, trajectory=True)
    frames = samples.trajectory_frames(nrow=2, scale=3)
    assert len(frames) == 4 and frames[0].size == (3 * (2 * 10 + 2), 3 * (2 * 10 + 2))  # 2x2 grid of 8 px, padding 2
    path = samples.save_gif(tmp_path / "denoise.gif", nrow=2, scale=3, fps=5)
    with Image.open(path) as gif:
        assert gif.n_frames == 4
        for k in range(4):
            gif.seek(k)
            assert np.array_equal(np.asarray(gif.convert("L")), np.asarray(frames[k].convert("L"))), k
            assert gif.info["duration"] == (200 if k < 3 else 1200)  # 5 fps, the last frame held 1 s longer
    # the noise frame is not the sample frame, and pixels of state k are those of the kept state
    first = np.asarray(image_trajectory_frames(samples.trajectory[:2], nrow=2, scale=1)[0].convert("L"))[2:10, 2:10]
    expected = (samples.trajectory[0, 0, 0].clamp(-1, 1) * 0.5 + 0.5).mul(255).round().to(torch.uint8).numpy()
    assert np.array_equal(first, expected)
    strip = trajectory_strip(samples.trajectory)
    assert strip.size == (4 * 10 + 2, 4 * 10 + 2)  # a row per sample, a column per state


def test_save_gif_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ValueError, match="at least one frame"):
        save_gif([], tmp_path / "a.gif")
    with pytest.raises(ValueError, match="share one size"):
        save_gif([Image.new("L", (4, 4)), Image.new("L", (5, 4))], tmp_path / "a.gif")
    with pytest.raises(ValueError, match="fps must be > 0"):
        save_gif([Image.new("L", (4, 4))], tmp_path / "a.gif", fps=0)
    assert not (tmp_path / "a.gif").exists()


def _red_centroid(frame: Image.Image) -> np.ndarray:
    rgb = np.asarray(frame.convert("RGB")).astype(int)
    red = (rgb[..., 0] > 150) & (rgb[..., 1] < 120) & (rgb[..., 2] < 120)
    ys, xs = np.nonzero(red)
    assert xs.size > 0, "no particles drawn"
    return np.array([xs.mean(), ys.mean()])


def test_particle_frames_draw_the_particles_where_they_are():
    g = torch.Generator().manual_seed(0)
    start = 0.2 + 0.05 * torch.randn(200, 2, generator=g)   # lower left
    end = start + torch.tensor([0.6, 0.6])                  # upper right
    traj = torch.stack([start, end], dim=1)                 # (200, 2, 2)
    field = lambda x, t: torch.ones_like(x)
    frames = particle_frames(traj, torch.tensor([0.0, 1.0]), bounds=(0, 1, 0, 1), field=field, size=3, dpi=60)
    assert len(frames) == 2 and frames[0].size == frames[1].size == (180, 180)
    (x0, y0), (x1, y1) = _red_centroid(frames[0]), _red_centroid(frames[1])
    assert x1 - x0 > 40 and y0 - y1 > 40  # moved right and up (image rows grow downwards)
    with pytest.raises(ValueError, match=r"\(N, T, 2\)"):
        particle_frames(torch.zeros(3, 2), torch.zeros(2))
    with pytest.raises(ValueError, match="one per state"):
        particle_frames(traj, torch.zeros(3))
