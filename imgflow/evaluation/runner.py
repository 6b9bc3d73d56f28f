"""The pieces scripts/evaluate.py and scripts/nfe_sweep.py share: load, sample, score.

Every function takes already-built objects (a model, its RunConfig, a classifier) so tests can
call them on tiny models without files; the scripts add argument parsing and printing.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from imgflow.checkpoint import Checkpoint, atomic_write_bytes, load_checkpoint, load_weights_into
from imgflow.config import ConfigError, RunConfig
from imgflow.core import ModelField
from imgflow.core.likelihood import bits_per_dim, dequantize, log_likelihood
from imgflow.data import CHANNELS, NUM_CLASSES
from imgflow.evaluation.class_accuracy import ClassAccuracy, balanced_labels, class_accuracy_of_samples
from imgflow.evaluation.classifier import ClassifierInfo, ImageClassifier, check_classifier_fits, extract_features, load_classifier
from imgflow.evaluation.fid import FeatureStats, feature_statistics, frechet_distance
from imgflow.factory import build_model, build_path, is_class_conditional
from imgflow.sampling import SamplerSettings, sample_images


# --- loading -------------------------------------------------------------------------------------


def load_flow_model(spec: str | Path, weights: str = "ema", device: torch.device | str = "cpu") -> tuple[nn.Module, RunConfig, Checkpoint]:
    """Rebuild the model a checkpoint describes and load its (EMA) weights; eval mode."""
    ckpt = load_checkpoint(spec)
    model = build_model(ckpt.config)
    load_weights_into(model, ckpt.weights(weights), ckpt.path)
    return model.to(device).eval(), ckpt.config, ckpt


def load_matching_classifier(path: str | Path, cfg: RunConfig, device: torch.device | str = "cpu") -> tuple[ImageClassifier, ClassifierInfo]:
    """load_classifier + a check that it was trained on the model's dataset, size and channels."""
    clf, info = load_classifier(path, device)
    check_classifier_fits(info, cfg.data.dataset, cfg.data.image_size, CHANNELS[cfg.data.dataset], cfg.data.resize)
    return clf, info


# --- inputs --------------------------------------------------------------------------------------


def parse_floats(text: str, option: str) -> list[float]:
    """'1,2,3' -> [1.0, 2.0, 3.0] or a one-line ConfigError naming the option."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated numbers like 1,2,3, got {text!r}") from None
    if not values or any(not math.isfinite(v) for v in values):
        raise ConfigError(f"{option} must be comma-separated finite numbers like 1,2,3, got {text!r}")
    return values


def parse_ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"{option} must be comma-separated integers like 4,8,16, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ConfigError(f"{option} must be comma-separated integers >= 1, got {text!r}")
    return values


def write_json(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomic JSON write (NaN becomes null)."""
    path = Path(path)
    atomic_write_bytes(path, (json.dumps(_finite(payload), indent=2) + "\n").encode())
    return path


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


# --- sampling and sample quality ------------------------------------------------------------------


@dataclass
class SampleSet:
    images: Tensor  # [-1, 1] (N, C, H, W)
    labels: Tensor | None
    nfe: int
    seconds: float


def draw_samples(model: nn.Module, cfg: RunConfig, settings: SamplerSettings, num: int, seed: int = 0,
                 batch_size: int = 256, device: torch.device | str = "cpu", progress: bool = False) -> SampleSet:
    """num samples with balanced labels (conditional models) and per-sample seeds (seed, i)."""
    labels = balanced_labels(num) if is_class_conditional(cfg) else None
    t0 = time.perf_counter()
    images, labels, nfe = sample_images(model, cfg, settings, num, seed=seed, labels=labels, batch_size=batch_size,
                                        device=device, progress=progress)
    return SampleSet(images, labels, nfe, time.perf_counter() - t0)


@dataclass
class SampleQuality:
    fid: float  # classifier FID against the reference statistics
    class_accuracy: ClassAccuracy | None  # conditional models only
    num_samples: int
    nonfinite: int  # samples with NaN/Inf (replaced by 0 before scoring)

    def to_dict(self) -> dict[str, Any]:
        out = {"fid": self.fid, "num_samples": self.num_samples, "nonfinite_samples": self.nonfinite}
        if self.class_accuracy is not None:
            ca = self.class_accuracy
            out.update(class_accuracy=ca.accuracy, per_class_accuracy=ca.per_class, confusion=ca.confusion)
        return out


def score_samples(samples: SampleSet, classifier: ImageClassifier, reference: FeatureStats,
                  device: torch.device | str = "cpu") -> SampleQuality:
    """Classifier FID of the samples against `reference`, and their class accuracy when labelled.

    Samples are clamped to [-1, 1] (what a saved image would show) before scoring.
    """
    images = samples.images
    bad = int((~torch.isfinite(images.flatten(1))).any(1).sum())
    images = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)
    fid = frechet_distance(feature_statistics(extract_features(classifier, images, device=device)), reference)
    acc = None
    if samples.labels is not None:
        acc = class_accuracy_of_samples(classifier, images, samples.labels, device=device)
    return SampleQuality(fid, acc, images.shape[0], bad)


def real_baseline_fid(classifier: ImageClassifier, images_uint8: Tensor, reference: FeatureStats, num: int,
                      seed: int = 0, device: torch.device | str = "cpu") -> float:
    """Classifier FID of `num` random real images (e.g. the training split) against the reference:
    the value a perfect generator would get with the same sample size (the small-N floor)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(images_uint8.shape[0], generator=g)[:num]
    return frechet_distance(feature_statistics(extract_features(classifier, images_uint8[idx], device=device)), reference)


# --- likelihood ------------------------------------------------------------------------------------


@dataclass
class NLLResult:
    bits_per_dim: float  # mean over images
    bits_per_dim_stderr: float  # standard error of the mean over images (includes Hutchinson noise)
    per_image: list[float]
    num_images: int
    nfe: int  # augmented-ODE evaluations per batch
    seconds: float
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_nll(
    model: nn.Module,
    cfg: RunConfig,
    images_uint8: Tensor,
    labels: Tensor | None = None,
    label_mode: str = "null",
    solver: str = "adaptive",
    num_steps: int = 16,
    num_probes: int = 1,
    probe: str = "rademacher",
    seed: int = 0,
    batch_size: int = 50,
    rtol: float = 1e-4,
    atol: float = 1e-4,
    grid_power: float = 3.0,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> NLLResult:
    """Bits/dim of dequantised images under the model's probability-flow ODE (Hutchinson divergence).

    label_mode "null" scores p(x) with the null label (the unconditional model a class-conditional
    one learns through label dropout), "true" scores p(x | y) with the images' labels; an
    unconditional model ignores it. The default adaptive solver (rtol = atol = 1e-4) is within
    about 0.01 bits/dim of a tight solve; fixed-step solvers use `num_steps` steps on a grid that
    shrinks towards the data end (`grid_power`). See imgflow.core.likelihood for the dequantisation,
    the formula and why uniform steps fail here.
    """
    if label_mode not in ("null", "true"):
        raise ValueError(f"label_mode must be 'null' or 'true', got {label_mode!r}")
    conditional = is_class_conditional(cfg)
    if conditional and label_mode == "true" and labels is None:
        raise ValueError("label_mode 'true' needs the images' labels")
    model.eval()
    schedule = build_path(cfg).schedule
    x_all = dequantize(images_uint8, seed)
    dims = x_all[0].numel()
    bpd: list[Tensor] = []
    nfe = 0
    t0 = time.perf_counter()
    for b, start in enumerate(range(0, x_all.shape[0], batch_size)):
        x = x_all[start : start + batch_size].to(device)
        kwargs: dict[str, Any] = {}
        if conditional:
            y = labels[start : start + batch_size].to(device) if label_mode == "true" else torch.full((x.shape[0],), NUM_CLASSES, device=device)
            kwargs["y"] = y
        field_ = ModelField(model, cfg.flow.prediction, schedule, model_kwargs=kwargs)
        res = log_likelihood(field_, x, solver=solver, num_steps=num_steps, divergence="hutchinson", probe=probe,
                             num_probes=num_probes, seed=seed + 1000 * b + 1, rtol=rtol, atol=atol, grid_power=grid_power)
        bpd.append(bits_per_dim(res.log_prob.double().cpu(), dims))
        nfe = max(nfe, res.nfe)
        if log is not None:
            done = start + x.shape[0]
            log(f"  NLL {done}/{x_all.shape[0]} images: {torch.cat(bpd).mean():.4f} bits/dim so far | {time.perf_counter() - t0:.0f} s")
    values = torch.cat(bpd)
    stderr = float(values.std() / math.sqrt(values.numel())) if values.numel() > 1 else float("nan")
    settings = {"solver": solver, "num_steps": num_steps, "num_probes": num_probes, "probe": probe, "label": label_mode,
                "dequantization": "uniform, width 2/256", "seed": seed}
    if solver == "adaptive":
        settings.update(rtol=rtol, atol=atol)
    else:
        settings.update(grid_power=grid_power)
    return NLLResult(float(values.mean()), stderr, values.tolist(), values.numel(), nfe, time.perf_counter() - t0, settings)
