"""The public way to draw images from a trained model: `Sampler`.

    from imgflow import Sampler
    sampler = Sampler.from_checkpoint("runs/mnist")            # a run folder or a ckpt-*.safetensors
    samples = sampler.sample(20, labels=[3, 7], steps=20)       # tensor in [-1, 1], labels, NFE
    samples.save_grid("digits.png")                             # or samples.to_pil(), samples.grid()

Sample i always starts from the noise seeded by (seed, i), and an SDE sampler draws sample i's
Brownian increments from its own generator too, so a result does not depend on the batch size
it was drawn with, up to float rounding (a convolution kernel may block its sums differently for
another batch size: differences of order 1e-7 on images in [-1, 1]). Training grids, the sampling
script, evaluation and the sweeps all draw through this class; what it returns is `imgflow.samples.Samples`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from imgflow.config import ConfigError, RunConfig
from imgflow.core import (
    SOLVERS,
    ClassifierFreeGuidance,
    FlowMap,
    GaussianPath,
    InterpolantSDE,
    LearnedVectorFieldODE,
    ModelField,
    make_solver,
    named_time_grid,
    schedule_from_name,
    solver_info,
)
from imgflow.core.sampling_settings import SamplingSettings
from imgflow.data import DataSpec, UnknownClassError, dataset_spec
from imgflow.model_record import ModelRecord, build_network, record_from_config
from imgflow.samples import Samples
from imgflow.seeding import generator
from imgflow.sharding import active_shards

if TYPE_CHECKING:
    from imgflow.checkpoint import Checkpoint
    from imgflow.latents import LatentCodec
    from imgflow.model_card import CardScore

#: what `labels=` accepts: None (balanced over the classes), one class, a list cycled to `num`, or (num,) labels
Labels = int | str | Sequence[int | str] | Tensor | None


def per_sample_noise(seed: int, indices: range | list[int], shape: tuple[int, ...], device: torch.device | str = "cpu") -> Tensor:
    """(len(indices), *shape) standard normals; row k depends only on (seed, indices[k])."""
    return torch.stack([torch.randn(shape, generator=generator(seed, "init", i)) for i in indices]).to(device)


class PerSampleBrownian:
    """Noise source for Euler-Maruyama: each row draws from its own generator seeded by (seed, i)."""

    def __init__(self, seed: int, indices: range | list[int]) -> None:
        self.generators = [generator(seed, "brownian", i) for i in indices]

    def __call__(self, x: Tensor) -> Tensor:
        draws = [torch.randn(x.shape[1:], generator=g) for g in self.generators]
        return torch.stack(draws).to(device=x.device, dtype=x.dtype)


def _clip_finite(x: Tensor) -> Tensor:
    """x clipped to the data range [-1, 1]; non-finite values are kept, so a diverged sample stays visible."""
    return torch.where(torch.isfinite(x), x.clamp(-1.0, 1.0), x)


def trajectory_indices(grid: Tensor, trajectory: bool | int | Sequence[float]) -> list[int] | None:
    """Which states of a solver's time grid (T,) (steps + 1 states, the noise at grid[0] first) `trajectory=` keeps:
    None for False, all for True, k about evenly spaced ones (always the first and the last) for an integer k >= 2,
    and for a sequence of times in [0, 1] the grid state nearest to each (in time order, each state once)."""
    num_states = grid.numel()
    if trajectory is False or trajectory is None:
        return None
    if trajectory is True:
        return list(range(num_states))
    if isinstance(trajectory, Sequence) and not isinstance(trajectory, str):
        times = [float(t) for t in trajectory] if all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in trajectory) else []
        if not times or not all(0.0 <= t <= 1.0 for t in times):
            raise ConfigError(f"trajectory times must be a non-empty list of numbers in [0, 1] (0 noise, 1 data), got {trajectory!r}")
        return sorted({int((grid - t).abs().argmin()) for t in times})
    if isinstance(trajectory, bool) or not isinstance(trajectory, int) or trajectory < 2:
        raise ConfigError("trajectory must be False, True (every state), an integer >= 2 (that many states) or a list of times "
                          f"in [0, 1], got {trajectory!r}")
    if trajectory > num_states:
        raise ConfigError(f"trajectory={trajectory} asks for more states than the sampler's grid has ({num_states} = steps + 1): "
                          "use trajectory=True or more steps")
    return sorted({round(k * (num_states - 1) / (trajectory - 1)) for k in range(trajectory)})


def balanced_labels(num: int, classes: Sequence[int]) -> Tensor:
    """classes[0], classes[1], ..., cycled to num labels: (num,) int64."""
    return torch.tensor([classes[i % len(classes)] for i in range(num)], dtype=torch.long)


class Sampler:
    """Draws images from a trained model with any solver of imgflow.core.SOLVERS.

    Args:
        model: the network (called as model(x, t, y=labels, r=...)); put in eval mode while sampling.
        record: what the model is (`imgflow.model_record.ModelRecord`: path, prediction, flow map or not, data
            shape and classes, default sampler), as a checkpoint records it; or the RunConfig it was trained with.
        spec: with a RunConfig, the shape and classes of its data (default: what config.data implies).
        device: where to sample (default: the model's device).
        step: the training step of the weights, for reports.
        codec: for a model of latents (record.latent set), the `imgflow.latents.LatentCodec` that decodes them:
            samples are then images, and `spec` describes the images (`latent_spec` the latents).
    """

    def __init__(self, model: nn.Module, record: ModelRecord | RunConfig, spec: DataSpec | None = None,
                 device: torch.device | str | None = None, step: int | None = None, codec: LatentCodec | None = None,
                 training_config: str = "", weights: str = "ema") -> None:
        if isinstance(record, RunConfig):
            training_config = training_config or record.to_json()
            if record.data.autoencoder and codec is None:
                raise ConfigError("a model of latents needs its autoencoder to decode: use Sampler.from_checkpoint, or pass codec=")
            spec = spec or dataset_spec(record.data)
            if codec is not None and spec.shape != codec.latent_shape:  # the images' spec given: the model sees their latents
                from imgflow.latents import latent_spec

                spec = latent_spec(spec, codec)
            record = record_from_config(record, spec, codec.to_record() if codec is not None else None)
        if record.latent and codec is None:
            raise ConfigError("this model generates latents and needs the autoencoder that decodes them: use Sampler.from_checkpoint "
                              "(latent checkpoints carry it) or pass codec=")
        self.model = model
        self.record = record
        self.codec = codec if record.latent else None
        self.latent_spec = record.spec
        self.spec = record.image_spec
        first = next(iter(model.parameters()), None)
        self.device = torch.device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))
        self.model.to(self.device)
        if self.codec is not None:
            self.codec.to(self.device)
        self.step = step
        self.path = GaussianPath(schedule_from_name(record.schedule))
        self.conditional = record.conditional
        self.training_config = training_config  # the run config as JSON ("" when unknown), for save_pretrained
        self.weights_name = weights

    @classmethod
    def from_checkpoint(cls, where: str | Path, weights: str = "ema", device: torch.device | str | None = None) -> Sampler:
        """Rebuild the model a checkpoint (file or run folder), a model folder, a shipped name or a Hub repo id (see
        from_pretrained) describes, with its EMA ('raw': the trained weights; 'ema@0.99': an extra EMA the run kept,
        train.extra_ema_decays)."""
        from imgflow.checkpoint import load_checkpoint
        from imgflow.pretrained import model_location

        return cls.from_loaded(load_checkpoint(model_location(where, key="checkpoint")), weights, device)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "mnist", device: torch.device | str | None = None, *,
                        revision: str | None = None, weights: str = "ema") -> Sampler:
        """A model by name: one shipped inside the package (`imgflow.pretrained.PRETRAINED`: "mnist", "mnist-meanflow",
        "mnist-distill"; no download), a local model folder (`save_pretrained`), run folder or checkpoint file, or a
        Hugging Face Hub repo id ("owner/name", fetched into the Hub cache; HF_HUB_OFFLINE=1 reads the cache only).
        revision: the Hub branch, tag or commit."""
        from imgflow.checkpoint import load_checkpoint
        from imgflow.pretrained import model_location

        return cls.from_loaded(load_checkpoint(model_location(name_or_path, revision)), weights, device)

    def save_pretrained(self, folder: str | Path, *, dtype: torch.dtype | None = None, name: str = "", description: str = "",
                        scores: Sequence[CardScore] = (), license: str | None = None, tags: Sequence[str] = (),
                        config_name: str = "", commands: Sequence[str] = (), overwrite: bool = False) -> Path:
        """Write this model as a Hub-style folder (imgflow.model_folder: config.json, model.safetensors, README.md, and
        codec.safetensors for a latent model of imgflow's autoencoder) that `from_pretrained(folder)` loads back.

        dtype: of the weights on disk (None: as they are; torch.float16 halves the folder, and samples then differ from
        the float32 model's by the rounding); scores: measured numbers for the model card (imgflow.model_card.CardScore);
        license: the card's license field (left out when None); name: the card's title (default: the folder's name).
        Machine paths in the training config (data root, output folder, warm start) are replaced by defaults.
        """
        from imgflow.digests import weights_digest
        from imgflow.model_card import model_card
        from imgflow.model_folder import write_model_folder
        from imgflow.pretrained import portable_config

        folder = Path(folder)
        config_json = portable_config(self.training_config) if self.training_config else ""
        codec_weights = None
        if self.codec is not None and self.codec.kind == "imgflow":
            codec_weights = {k: v.detach().cpu() for k, v in self.codec.autoencoder.state_dict().items()}
            if weights_digest(codec_weights) != self.codec.digest:
                raise ConfigError("this sampler's autoencoder is not the one its record names (its weights changed since it was "
                                  "loaded); reload the sampler before saving it")
        objective = json.loads(config_json).get("flow", {}).get("objective", "") if config_json else ""
        card = model_card(name or folder.name, self.record, step=self.step or 0, objective=objective, config_name=config_name,
                          description=description, scores=scores, license=license, tags=tags, commands=commands,
                          weights={"ema": "EMA", "raw": "raw (not averaged)"}.get(self.weights_name, self.weights_name))
        state = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
        return write_model_folder(folder, record=self.record, weights=state, config_json=config_json, step=self.step or 0,
                                  card=card, codec_weights=codec_weights, dtype=dtype, source=self.weights_name, overwrite=overwrite)

    @classmethod
    def from_loaded(cls, ckpt: Checkpoint, weights: str = "ema", device: torch.device | str | None = None) -> Sampler:
        """The sampler of a loaded checkpoint, built from its model record alone."""
        from imgflow.checkpoint import load_weights_into
        from imgflow.nn.backbones import backbone

        if weights not in ckpt.weight_choices:
            raise ConfigError(f"weights must be one of {', '.join(ckpt.weight_choices)} for {ckpt.path}, got {weights!r}")
        if backbone(ckpt.record.arch).kind == "autoencoder":
            raise ConfigError(f"{ckpt.path} is an autoencoder, which does not sample: train a latent model on it (data.autoencoder = "
                              f"{str(ckpt.path.parent)!r}) and sample that, or look at its reconstructions (imgflow.latents)")
        codec = None
        if ckpt.record.latent:
            from imgflow.latents import LatentCodec

            codec = LatentCodec.from_record(ckpt.record.latent, ckpt.autoencoder, ckpt.path)
        model = build_network(ckpt.record)
        load_weights_into(model, ckpt.weights(weights), ckpt.path)
        from imgflow.devices import resolve_device

        return cls(model.eval(), ckpt.record, device=resolve_device(device), step=ckpt.step, codec=codec,
                   training_config=ckpt.config_json, weights=weights)

    # --- what it can do -----------------------------------------------------------------------
    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names if self.conditional else ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self.spec.shape

    @property
    def defaults(self) -> SamplingSettings:
        """The sampler the run's config asks for ([sample] section), completed ('auto' grid: the solver's)."""
        return self.settings()

    def settings(self, solver: str | None = None, steps: int | None = None, time_grid: str | None = None,
                 guidance: float | None = None, **solver_options: Any) -> SamplingSettings:
        """Complete and check sampler settings; None takes the run's default ('auto' grid: the solver's).

        solver_options: the chosen solver's own settings (`SOLVERS[solver].options`: rtol and atol of "adaptive",
        sde_epsilon of "euler_maruyama"); None leaves one at the run's value (or, for another solver than the
        run's, at that solver's default). A setting the solver does not have is refused.
        """
        try:
            base = self.record.sampling_settings()
        except ValueError as exc:  # a solver this program has not registered (a plug-in not imported)
            raise ConfigError(f"the model's default sampler cannot be read: {exc}; import the module that registers it, "
                              "or pass solver=") from None
        solver = solver or base.solver
        try:
            info = solver_info(solver)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        given = {k: v for k, v in solver_options.items() if v is not None}
        own = info.option_names
        stray = sorted(set(given) - set(own))
        if stray:
            havers = [n for n, s in SOLVERS.items() if stray[0] in s.option_names]
            where = f" (it is a setting of {' and '.join(havers)})" if havers else ""
            raise ConfigError(f"solver {solver!r} has no setting {stray[0]!r}{where}; its settings: {', '.join(sorted(own)) or 'none'}")
        options = base.options if solver == base.solver else info.options()
        try:
            options = dataclasses.replace(options, **given)
        except TypeError as exc:
            raise ConfigError(f"solver {solver!r}: {exc}") from None
        steps = base.steps if steps is None else int(steps)
        time_grid = time_grid or base.time_grid
        if time_grid == "auto":
            time_grid = info.default_time_grid
        guidance = base.guidance if guidance is None else float(guidance)
        if guidance != 1.0 and not self.conditional:
            raise ConfigError(f"guidance {guidance:g} needs a class-conditional model; this one is unconditional (use 1)")
        if info.flow_map and not self.flow_map:
            odes = ", ".join(n for n, e in SOLVERS.items() if not e.flow_map)
            raise ConfigError(f"solver {solver!r} jumps with a flow-map model (trained with a flow-map objective such as mean_flow); "
                              f"this model predicts a velocity: use one of {odes}")
        out = SamplingSettings(solver, steps, time_grid, guidance, options)
        try:
            out.validate()
            named_time_grid(out.time_grid, 1)  # an unknown grid name fails here, before any work
        except ValueError as exc:
            raise ConfigError(str(exc).replace("sample.num_steps", "steps").replace("sample.guidance_scale", "guidance")) from None
        return out

    @property
    def flow_map(self) -> bool:
        """Whether the model is a flow map u(x, t, r) (a MeanFlow model) that the flow_map solver can jump with."""
        return self.record.flow_map

    @property
    def trained_guidance(self) -> float | None:
        """The guidance scale a MeanFlow model was trained to sample like at guidance 1 (None for velocity models;
        1 for an unconditional flow map, whose training had no labels to guide with)."""
        if not self.flow_map:
            return None
        return self.record.trained_guidance if self.conditional and self.record.trained_guidance is not None else 1.0

    def labels(self, num: int, labels: Labels = None) -> Tensor | None:
        """(num,) labels for `labels=` as `sample` takes it; None for an unconditional model."""
        if not self.conditional:
            if labels is not None:
                raise ConfigError("labels need a class-conditional model; this one is unconditional (leave labels out)")
            return None
        try:
            if labels is None:
                return balanced_labels(num, list(range(self.spec.num_classes)))
            if isinstance(labels, Tensor):
                if labels.shape != (num,) or labels.dtype.is_floating_point:
                    raise ConfigError(f"a labels tensor must be ({num},) integers, got {labels.dtype} {tuple(labels.shape)}")
                return torch.tensor(self.spec.labels_of(labels.tolist()), dtype=torch.long)
            if isinstance(labels, (int, str)):
                labels = [labels]
            classes = self.spec.labels_of(list(labels))
        except UnknownClassError as exc:
            raise ConfigError(str(exc)) from None
        if not classes:
            raise ConfigError("labels is empty; give at least one class (or None for all classes)")
        return balanced_labels(num, classes)

    # --- drawing ------------------------------------------------------------------------------
    def _dynamics(self, settings: SamplingSettings, y: Tensor | None, seed: int, idx: range):
        net = self.model
        if y is not None:
            net = ClassifierFreeGuidance(self.model, y, settings.guidance, null_label=self.record.null_label)
        info = solver_info(settings.solver)
        if info.flow_map:
            return FlowMap(lambda x, t, r: net(x, t, r=r), self.path.schedule), ({"noise": PerSampleBrownian(seed, idx)} if info.stochastic else {})
        field = ModelField(net, self.record.prediction, self.path.schedule)
        if info.stochastic:
            return InterpolantSDE(field, self.path.schedule, settings.options.sde_epsilon), {"noise": PerSampleBrownian(seed, idx)}
        return LearnedVectorFieldODE(field), info.solver_kwargs(settings.options)

    @torch.inference_mode()
    def sample(self, num: int = 16, labels: Labels = None, *, guidance: float | None = None, solver: str | None = None,
               steps: int | None = None, time_grid: str | None = None, seed: int = 0, batch_size: int = 256,
               progress: bool = False, clip: bool = True, noise: Tensor | None = None,
               trajectory: bool | int | Sequence[float] = False, **solver_options: Any) -> Samples:
        """Draw `num` images.

        labels: None (cycle through every class), a class (index or name), a list of classes
        cycled to `num`, or a (num,) tensor; must be None for an unconditional model.
        guidance / solver / steps / time_grid and the solver's own settings (solver_options: sde_epsilon of
        euler_maruyama, rtol / atol of adaptive; see `settings`) default to the run's [sample] section.
        Sample i starts from the noise seeded by (seed, i), whatever batch_size.
        clip: clip the solver's output to the data range [-1, 1] (non-finite values are kept, so
        a diverged sample stays visible); False returns it as integrated.
        noise: (num, *latent_spec.shape) starting noise instead of the seeded draws (e.g. `interpolate`'s).
        A latent model's samples are decoded by its autoencoder: images, not latents.
        trajectory: also keep intermediate states on the solver's time grid (steps + 1 states from the noise at
        t = 0 to the samples at t = 1): True keeps all, an integer k about evenly spaced k of them, a list of times the
        grid state nearest to each (trajectory=[0, 0.5, 0.9, 1]); they come back
        as `Samples.trajectory` (num, k, C, H, W), decoded and clipped like the images, with `trajectory_times`
        (k,), for `Samples.save_gif` and `Samples.trajectory_strip`. The samples are the same either way.
        """
        if num < 1 or batch_size < 1:
            raise ConfigError(f"num and batch_size must be >= 1, got {num} and {batch_size}")
        if noise is not None and tuple(noise.shape) != (num, *self.latent_spec.shape):
            raise ConfigError(f"noise must have shape ({num}, {', '.join(map(str, self.latent_spec.shape))}), got {tuple(noise.shape)}")
        settings = self.settings(solver, steps, time_grid, guidance, **solver_options)
        y_all = self.labels(num, labels)
        # the grid is the same for every batch: check `trajectory` before any work
        keep = trajectory_indices(named_time_grid(settings.time_grid, settings.steps), trajectory)
        was_training = self.model.training
        self.model.eval()
        out: list[Tensor] = []
        states: list[Tensor] = []
        kept_times = None
        nfe = 0
        t0 = time.perf_counter()
        shards = active_shards()  # inside sharded_sampling(): this process draws its block of the indices
        mine = shards.block(num) if shards is not None else range(num)
        progress = progress and (shards is None or shards.rank == 0)  # one bar, not one per process
        try:
            from imgflow.core.progress import progress_bar

            for start in progress_bar(range(mine.start, mine.stop, batch_size), enabled=progress and len(mine) > batch_size,
                                      desc="batches", leave=False):
                idx = range(start, min(start + batch_size, mine.stop))
                x = (per_sample_noise(seed, idx, self.latent_spec.shape, self.device) if noise is None
                     else noise[idx.start: idx.stop].to(self.device, torch.float32))
                y = y_all[idx.start: idx.stop].to(self.device) if y_all is not None else None
                dynamics, kwargs = self._dynamics(settings, y, seed, idx)
                ode_solver = make_solver(settings.solver, dynamics, progress=progress, **kwargs)
                t_start = 1e-3 if 0.0 in dynamics.singular_times else 0.0
                t_end = 1.0 - 1e-3 if 1.0 in dynamics.singular_times else 1.0
                ts = named_time_grid(settings.time_grid, settings.steps, t_start, t_end).to(self.device)
                if keep is None:
                    x = ode_solver.simulate(x, ts).float()
                else:
                    path = ode_solver.simulate_with_trajectory(x, ts)[:, keep].float()  # (B, k, ...)
                    kept_times = ts[keep].cpu()
                    x = path[:, -1]
                    path = path.flatten(0, 1)
                    if self.codec is not None:
                        path = self.codec.decode(path).float()
                    path = _clip_finite(path) if clip else path
                    states.append(path.unflatten(0, (len(idx), len(keep))).cpu())
                if self.codec is not None:
                    x = self.codec.decode(x).float()
                out.append((_clip_finite(x) if clip else x).cpu())
                nfe = max(nfe, ode_solver.nfe)
        finally:
            self.model.train(was_training)
        images = torch.cat(out) if out else torch.empty((0, *self.image_shape))
        kept = torch.cat(states) if states else (torch.empty((0, len(keep), *self.image_shape)) if keep is not None else None)
        if shards is not None:  # a process whose block was empty takes the others' NFE and kept times
            images, nfe = shards.gather(images), max(shards.collect(nfe))
            kept = shards.gather(kept) if kept is not None else None
            kept_times = next((t for t in shards.collect(kept_times) if t is not None), None)
        return Samples(images, y_all, nfe, time.perf_counter() - t0, settings, self.class_names, kept, kept_times)


    def interpolate(self, num: int = 8, label: int | str | None = None, seeds: tuple[int, int] = (0, 1), **sample_kwargs) -> Samples:
        """One strip of `num` samples whose starting noises move along the great circle (`slerp`) from the noise of
        seeds[0] to that of seeds[1], all with one label (None: the first class; unconditional models take none).

        With a deterministic sampler the strip shows how the model's output changes along the way; the ends are
        sample 0 of `sample(seed=seeds[0])` and of `sample(seed=seeds[1])`. Other keywords go to `sample`.
        """
        from imgflow.core.interpolation import slerp

        if num < 2:
            raise ConfigError(f"an interpolation needs num >= 2 images, got {num}")
        a = per_sample_noise(seeds[0], [0], self.latent_spec.shape)[0]
        b = per_sample_noise(seeds[1], [0], self.latent_spec.shape)[0]
        noise = slerp(a, b, torch.linspace(0.0, 1.0, num))
        labels = None if not self.conditional else [label if label is not None else 0]
        return self.sample(num, labels, noise=noise, **sample_kwargs)


__all__ = ["Labels", "PerSampleBrownian", "Sampler", "balanced_labels", "per_sample_noise", "trajectory_indices"]
