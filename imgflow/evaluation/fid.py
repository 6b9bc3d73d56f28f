"""Fréchet distances between Gaussian fits of feature sets, with cached reference statistics.

    FD^2 = |mu_1 - mu_2|^2 + tr(S_1) + tr(S_2) - 2 tr((S_1^{1/2} S_2 S_1^{1/2})^{1/2})

computed in float64 with symmetric eigen-decompositions only (no scipy): S_1^{1/2} from
eigh(S_1) (negative round-off eigenvalues clamped to 0), then the trace of the square root of
the symmetric PSD matrix S_1^{1/2} S_2 S_1^{1/2} as the sum of the square roots of its
eigenvalues. (tr sqrt(S_1 S_2) equals it: S_1 S_2 is similar to that symmetric matrix.)

"Classifier FID" uses the 128-d penultimate features of the project's classifier
(`imgflow.evaluation.classifier`) and compares samples with the statistics of the dataset's
test split. Those reference statistics are computed once and cached as a small safetensors
file keyed by the classifier file's SHA-256, the dataset, the image size (and resize flag) and
the split; a changed classifier file gets a new key, so stale statistics are never used.

Inception FID (the number papers report) needs torch-fidelity (also installed by
`pip install "torchmetrics[image]"`) and its InceptionV3 weights file; `inception_status`
says what is missing in one line, and `inception_fid` computes it when both are present.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imgflow.config import ConfigError
from imgflow.file_locks import build_lock, lock_file_for

STATS_FORMAT = "imgflow-feature-stats-1"


# --- Gaussian fits and the distance -------------------------------------------------------------


@dataclass
class FeatureStats:
    """Mean (D,) and unbiased covariance (D, D) of n feature vectors, float64."""

    mean: Tensor
    cov: Tensor
    n: int


def feature_statistics(features: Tensor) -> FeatureStats:
    """Gaussian fit of features (N, D): mean and unbiased covariance in float64."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"need at least 2 feature vectors of shape (N, D), got {tuple(features.shape)}")
    f = features.double()
    mean = f.mean(0)
    centred = f - mean
    cov = centred.T @ centred / (f.shape[0] - 1)
    return FeatureStats(mean, cov, f.shape[0])


def _sqrtm_psd(a: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix via eigh (round-off negatives -> 0)."""
    vals, vecs = torch.linalg.eigh(0.5 * (a + a.T))
    return (vecs * vals.clamp_min(0.0).sqrt()) @ vecs.T


def trace_sqrt_product(cov1: Tensor, cov2: Tensor) -> Tensor:
    """tr((C1^{1/2} C2 C1^{1/2})^{1/2}) = tr sqrt(C1 C2) in float64."""
    s1 = _sqrtm_psd(cov1.double())
    m = s1 @ cov2.double() @ s1
    vals = torch.linalg.eigvalsh(0.5 * (m + m.T))
    return vals.clamp_min(0.0).sqrt().sum()


def frechet_distance(a: FeatureStats | tuple[Tensor, Tensor], b: FeatureStats | tuple[Tensor, Tensor]) -> float:
    """Squared Fréchet (2-Wasserstein) distance between N(mu_a, S_a) and N(mu_b, S_b); >= 0."""
    mu1, c1 = (a.mean, a.cov) if isinstance(a, FeatureStats) else a
    mu2, c2 = (b.mean, b.cov) if isinstance(b, FeatureStats) else b
    mu1, c1, mu2, c2 = (v.double() for v in (mu1, c1, mu2, c2))
    if mu1.shape != mu2.shape or c1.shape != c2.shape or c1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(f"feature statistics do not match: means {tuple(mu1.shape)} / {tuple(mu2.shape)}, "
                         f"covariances {tuple(c1.shape)} / {tuple(c2.shape)}")
    diff = (mu1 - mu2).pow(2).sum()
    value = diff + torch.trace(c1) + torch.trace(c2) - 2.0 * trace_sqrt_product(c1, c2)
    return max(float(value), 0.0)


# --- reference statistics with a cache ---------------------------------------------------------


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _default_stats_folder(classifier_path: Path) -> Path:
    from imgflow.disk_cache import cache_root
    from imgflow.pretrained import FOLDER as PRETRAINED_FOLDER

    folder = classifier_path.parent
    if folder.resolve() == PRETRAINED_FOLDER or not os.access(folder, os.W_OK):
        return cache_root() / "fid"
    return folder


def stats_cache_path(classifier_path: str | Path, identity: dict[str, str], split: str, cache_dir: str | Path | None = None,
                     digest: str | None = None) -> Path:
    """<cache_dir or the classifier's folder>/<classifier stem>.<dataset>-<size>[-resize]-<split>.<sha16>.stats.safetensors

    sha16 covers the classifier file and everything in the data identity (a folder's fingerprint included).
    A classifier shipped in the package (imgflow.pretrained), or one in a folder that is not writable, keeps its
    statistics in the imgflow cache instead (IMGFLOW_CACHE, else ~/.cache/imgflow: fid/).
    """
    classifier_path = Path(classifier_path)
    digest = digest or file_sha256(classifier_path)
    folder = Path(cache_dir) if cache_dir is not None else _default_stats_folder(classifier_path)
    tag = f"{identity['dataset']}-{identity['image_size']}{'-resize' if identity.get('resize') == 'True' else ''}-{split}"
    key = hashlib.sha256((digest + json.dumps(identity, sort_keys=True)).encode()).hexdigest()
    return folder / f"{classifier_path.stem}.{tag}.{key[:16]}.stats.safetensors"


def save_stats(path: Path, stats: FeatureStats, metadata: dict[str, str]) -> None:
    from imgflow.files import atomic_save_safetensors

    atomic_save_safetensors(path, {"mean": stats.mean, "cov": stats.cov}, {**metadata, "format": STATS_FORMAT, "n": str(stats.n)})


def load_stats(path: Path, expect: dict[str, str] | None = None) -> FeatureStats | None:
    """Statistics from a cache file, or None when it is missing, unreadable or for other inputs."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            mean, cov = fh.get_tensor("mean"), fh.get_tensor("cov")
    except (SafetensorError, OSError, ValueError, RuntimeError, KeyError):
        return None
    if meta.get("format") != STATS_FORMAT or any(meta.get(k) != v for k, v in (expect or {}).items()):
        return None
    return FeatureStats(mean.double(), cov.double(), int(meta.get("n", 0)))


@dataclass
class ReferenceStats:
    stats: FeatureStats
    cache_path: Path
    computed: bool  # False: read from the cache
    cache_written: bool


def compute_feature_statistics(feature_fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 500,
                               device: torch.device | str = "cpu") -> FeatureStats:
    """Gaussian fit of feature_fn over images (uint8, or float in [-1, 1]) in batches."""
    from imgflow.evaluation.classifier import map_batches

    return feature_statistics(map_batches(feature_fn, images, batch_size, device))


def reference_statistics(
    classifier_path: str | Path,
    feature_fn: Callable[[Tensor], Tensor],
    data: Any,
    split: str = "test",
    cache_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> ReferenceStats:
    """Feature statistics of a split of the dataset a config's [data] section describes, computed once and cached.

    The cache key holds the SHA-256 of the classifier file and the data identity (dataset,
    size, resizing, a folder's fingerprint), so retraining the classifier or changing the data
    recomputes; cache files of the same classifier name and data tag whose key differs are
    removed when the new one is written. An unwritable cache folder only costs the
    recomputation next time (a one-line note through `log`).
    """
    from imgflow.data import data_identity, load_dataset

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    identity = data_identity(data)
    digest = file_sha256(classifier_path)
    path = stats_cache_path(classifier_path, identity, split, cache_dir, digest)
    expect = {"classifier_sha256": digest, "identity": json.dumps(identity, sort_keys=True), "split": split}
    cached = load_stats(path, expect)
    if cached is not None:
        return ReferenceStats(cached, path, computed=False, cache_written=False)
    with build_lock(lock_file_for(path), f"the reference statistics {path}", say=log):
        cached = load_stats(path, expect)  # computed by the process this one waited for
        if cached is not None:
            return ReferenceStats(cached, path, computed=False, cache_written=False)
        images = load_dataset(data, split).images
        stats = compute_feature_statistics(feature_fn, images, device=device)
        written = False
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_stats(path, stats, expect)
            written = True
            prefix = path.name.rsplit(".", 3)[0]  # <classifier stem>.<data tag>
            for old in path.parent.glob(f"{prefix}.*.stats.safetensors"):
                if old != path:
                    old.unlink(missing_ok=True)
        except OSError as exc:
            if log is not None:
                log(f"note: could not cache the reference statistics in {path.parent} ({exc.strerror}); pass a writable cache folder")
    return ReferenceStats(stats, path, computed=True, cache_written=written)


# --- Inception FID (optional) --------------------------------------------------------------------

#: file names torch-fidelity's InceptionV3 weights go by (newer releases, older releases)
INCEPTION_WEIGHT_NAMES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
INCEPTION_ENV = "IMGFLOW_INCEPTION_WEIGHTS"


class InceptionUnavailable(ConfigError):
    """Inception FID was asked for but its package or weights are missing (a one-line message)."""


def _hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_inception_weights(weights_path: str | Path | None = None) -> Path | None:
    """An explicit path, $IMGFLOW_INCEPTION_WEIGHTS, or a known file name in torch hub's checkpoints folder."""
    candidates: list[Path] = []
    if weights_path is not None:
        candidates.append(Path(weights_path))
    if os.environ.get(INCEPTION_ENV):
        candidates.append(Path(os.environ[INCEPTION_ENV]))
    candidates += [_hub_checkpoints() / name for name in INCEPTION_WEIGHT_NAMES]
    return next((p for p in candidates if p.is_file()), None)


def inception_status(weights_path: str | Path | None = None) -> str | None:
    """None when Inception FID can run offline; otherwise a one-line message saying what to install or where."""
    try:
        import torch_fidelity  # noqa: F401
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3  # noqa: F401
    except ImportError:
        return ("Inception FID needs torch-fidelity, which is not installed: `pip install torch-fidelity` "
                "(or `pip install \"torchmetrics[image]\"`), then put its weights file where --inception-weights, "
                f"${INCEPTION_ENV} or {_hub_checkpoints()} finds it; the classifier FID needs neither")
    if weights_path is not None and not Path(weights_path).is_file():
        return f"Inception weights file {weights_path} does not exist; download {INCEPTION_URL} to that path"
    if find_inception_weights(weights_path) is None:
        return (f"Inception FID needs the InceptionV3 weights and this machine is offline: download {INCEPTION_URL} "
                f"into {_hub_checkpoints()}/ (or pass --inception-weights FILE / set ${INCEPTION_ENV})")
    return None


def _to_rgb_uint8(images: Tensor) -> Tensor:
    """[-1, 1] float or uint8 (N, C, H, W) -> uint8 (N, 3, H, W)."""
    if images.dtype != torch.uint8:
        images = images.float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


@torch.inference_mode()
def inception_features(images: Tensor, weights_path: str | Path | None = None, batch_size: int = 100,
                       device: torch.device | str = "cpu") -> Tensor:
    """2048-d pool3 features of torch-fidelity's TF-compatible InceptionV3 (images resized to 299 inside)."""
    message = inception_status(weights_path)
    if message is not None:
        raise InceptionUnavailable(message)
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                      feature_extractor_weights_path=str(find_inception_weights(weights_path))).to(device)
    rgb = _to_rgb_uint8(images)
    out = [net(rgb[i : i + batch_size].to(device))[0].double().cpu() for i in range(0, rgb.shape[0], batch_size)]
    return torch.cat(out)


def inception_fid(real: Tensor, fake: Tensor, weights_path: str | Path | None = None,
                  device: torch.device | str = "cpu") -> float:
    """Inception FID between two image sets ([-1, 1] float or uint8, 1 or 3 channels)."""
    return frechet_distance(feature_statistics(inception_features(real, weights_path, device=device)),
                            feature_statistics(inception_features(fake, weights_path, device=device)))
