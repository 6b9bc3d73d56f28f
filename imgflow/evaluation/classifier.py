"""A small CNN classifier for 28x28 / 32x32 images: class accuracy of samples and Fréchet features.

The network sees images in [-1, 1] (the pipeline's scaling), has a 128-d penultimate layer
(`features`, the representation a Fréchet distance is computed on) and a linear head. It is
trained on the dataset's training split with in-memory batches (no augmentation) and saved as
safetensors with its architecture, dataset, image size and test accuracy in the metadata, so
`load_classifier` rebuilds it without any other input.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from imgflow.checkpoint import CheckpointError
from imgflow.data import DataSpec, ImageData
from imgflow.files import atomic_save_safetensors
from imgflow.seeding import generator

CLASSIFIER_FORMAT = "imgflow-classifier-1"


@dataclass
class ClassifierArch:
    """Architecture arguments (stored in the file's metadata)."""

    in_channels: int = 1
    widths: tuple[int, int, int] = (32, 64, 128)
    feature_dim: int = 128
    num_classes: int = 10
    pool: int = 3  # the last feature map is average-pooled to pool x pool (any input size works)


def _block(cin: int, cout: int, kernel: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class ImageClassifier(nn.Module):
    """conv5x5/2 -> conv3x3/2 -> conv3x3 (BatchNorm, ReLU) -> avg-pool to 3x3 -> 128 (features) -> logits.

    About 4.7 M multiply-adds per 28x28 image and 0.26 M parameters: cheap enough to train on a
    CPU in minutes and to run on every sample of an evaluation.
    """

    def __init__(self, arch: ClassifierArch | None = None) -> None:
        super().__init__()
        self.arch = arch = arch or ClassifierArch()
        c1, c2, c3 = arch.widths
        self.body = nn.Sequential(
            *_block(arch.in_channels, c1, 5, 2),
            *_block(c1, c2, 3, 2),
            *_block(c2, c3, 3, 1),
            nn.AdaptiveAvgPool2d(arch.pool),
            nn.Flatten(),
            nn.Linear(c3 * arch.pool**2, arch.feature_dim),
            nn.ReLU(inplace=True),
        )
        self.head = nn.Linear(arch.feature_dim, arch.num_classes)

    def features(self, x: Tensor) -> Tensor:
        """Penultimate activations (B, feature_dim) of images x in [-1, 1], (B, C, H, W)."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (B, num_classes)."""
        return self.head(self.body(x))


@dataclass
class ClassifierInfo:
    """What a classifier file says about itself: the data it was trained on (`identity`) and its test accuracy."""

    path: Path | None
    identity: dict[str, str]
    class_names: tuple[str, ...]
    test_accuracy: float
    arch: ClassifierArch
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def dataset(self) -> str:
        return self.identity.get("dataset", "?")

    @property
    def image_size(self) -> int:
        return int(self.identity.get("image_size", 0))


# --- batched inference ------------------------------------------------------------------------


@torch.inference_mode()
def map_batches(fn: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 500, device: torch.device | str = "cpu") -> Tensor:
    """fn over images in batches; uint8 images are scaled to [-1, 1] first. Result on CPU."""
    out = []
    for start in range(0, images.shape[0], batch_size):
        x = images[start : start + batch_size].to(device)
        x = x.float().div(127.5).sub(1.0) if x.dtype == torch.uint8 else x.float()
        out.append(fn(x).float().cpu())
    return torch.cat(out) if out else torch.empty(0)


def predict(model: ImageClassifier, images: Tensor, batch_size: int = 500, device: torch.device | str = "cpu") -> Tensor:
    """Predicted labels (N,) for images (uint8, or float in [-1, 1])."""
    model.eval()
    return map_batches(lambda x: model(x).argmax(1), images, batch_size, device).long()


def extract_features(model: ImageClassifier, images: Tensor, batch_size: int = 500, device: torch.device | str = "cpu") -> Tensor:
    """Penultimate features (N, feature_dim) for images (uint8, or float in [-1, 1])."""
    model.eval()
    return map_batches(model.features, images, batch_size, device)


def accuracy(model: ImageClassifier, data: ImageData, batch_size: int = 500, device: torch.device | str = "cpu") -> float:
    """Fraction of data classified correctly."""
    return (predict(model, data.images, batch_size, device) == data.labels).double().mean().item()


# --- training ---------------------------------------------------------------------------------


@dataclass
class TrainClassifierResult:
    model: ImageClassifier
    test_accuracy: float
    train_accuracy_last_epoch: float
    steps: int
    seconds: float


def train_classifier(
    train_data: ImageData,
    test_data: ImageData | None = None,
    arch: ClassifierArch | None = None,
    epochs: float = 4.0,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
    log_every: int = 100,
) -> TrainClassifierResult:
    """AdamW with a one-cycle learning rate over `epochs` passes of shuffled in-memory batches.

    Deterministic for a seed on CPU: the permutation of epoch e is drawn from (seed, "perm", e).
    """
    arch = arch or ClassifierArch(in_channels=train_data.shape[0], num_classes=train_data.num_classes)
    torch.manual_seed(seed)
    model = ImageClassifier(arch).to(device).to(memory_format=torch.channels_last)
    per_epoch = max(len(train_data) // batch_size, 1)
    steps = max(math.ceil(epochs * per_epoch), 1)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.2)
    data = train_data.to(device)
    model.train()
    t0 = time.perf_counter()
    correct = seen = 0
    perm = torch.empty(0, dtype=torch.long)
    for step in range(steps):
        epoch, j = divmod(step, per_epoch)
        if j == 0:
            perm = torch.randperm(len(data), generator=generator(seed, "perm", epoch)).to(device)
            correct = seen = 0
        idx = perm[j * batch_size : (j + 1) * batch_size]
        x, y = data.batch(idx)
        logits = model(x.contiguous(memory_format=torch.channels_last))
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        correct += (logits.argmax(1) == y).sum().item()
        seen += y.numel()
        if log is not None and ((step + 1) % log_every == 0 or step + 1 == steps):
            log(f"step {step + 1}/{steps} (epoch {epoch + 1}) loss {loss.item():.4f} train acc {correct / max(seen, 1):.4f} "
                f"| {time.perf_counter() - t0:.0f} s")
    model.eval()
    test_acc = accuracy(model, test_data, device=device) if test_data is not None else float("nan")
    return TrainClassifierResult(model.to(memory_format=torch.contiguous_format).cpu(), test_acc, correct / max(seen, 1), steps,
                                 time.perf_counter() - t0)


def fit_classifier(data: Any, out: str | Path, *, epochs: float = 4.0, batch_size: int = 128, lr: float = 3e-3, seed: int = 0,
                   train_subset: int = 0, device: torch.device | str = "cpu",
                   log: Callable[[str], None] | None = None) -> tuple[TrainClassifierResult, Path]:
    """Train the project classifier on the train split of a config's [data] section, test it on the held-out
    split, and save it (with the data identity and class names) to `out`."""
    from imgflow.config import ConfigError
    from imgflow.data import data_identity, load_dataset

    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("lr", lr)):
        if value <= 0:
            raise ConfigError(f"{name} must be > 0, got {value}")
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the folder {out.parent} for the classifier ({exc.strerror}); choose a writable path") from None
    if not os.access(out.parent, os.W_OK):
        raise ConfigError(f"the classifier's folder {out.parent} is not writable; choose another path")
    train = load_dataset(data, "train")
    test = load_dataset(data, "test")
    if train.labels is None or train.num_classes < 2:
        raise ConfigError(f"the {data.dataset} data has no classes to learn; the classifier needs class sub-folders (or a labelled dataset)")
    if train_subset > 0:
        train = train.subset(torch.arange(min(train_subset, len(train))))
    if log is not None:
        log(f"{data.dataset}: {len(train)} training and {len(test)} held-out images of shape {train.shape}, {train.num_classes} classes")
    arch = ClassifierArch(in_channels=train.shape[0], num_classes=train.num_classes)
    result = train_classifier(train, test, arch, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, device=device, log=log)
    extra = {"epochs": str(epochs), "batch_size": str(batch_size), "lr": str(lr), "seed": str(seed), "train_images": str(len(train))}
    try:
        save_classifier(out, result.model, data_identity(data), result.test_accuracy, train.spec.class_names, extra)
    except OSError as exc:
        raise ConfigError(f"cannot write {out}: {exc.strerror}; choose a writable path") from None
    return result, out


# --- files ------------------------------------------------------------------------------------


def save_classifier(path: str | Path, model: ImageClassifier, identity: dict[str, str], test_accuracy: float,
                    class_names: tuple[str, ...] = (), extra: dict[str, str] | None = None) -> Path:
    """Write weights and metadata (the data identity, class names, test accuracy, architecture) atomically."""
    path = Path(path)
    metadata = {
        **(extra or {}),
        "format": CLASSIFIER_FORMAT,
        "dataset": identity["dataset"],
        "image_size": identity["image_size"],
        "identity": json.dumps(identity, sort_keys=True),
        "class_names": json.dumps(list(class_names)),
        "test_accuracy": repr(float(test_accuracy)),
        "arch": json.dumps(asdict(model.arch)),
    }
    atomic_save_safetensors(path, dict(model.state_dict()), metadata)
    return path


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> tuple[ImageClassifier, ClassifierInfo]:
    """Rebuild a classifier from its file (eval mode); any problem is one CheckpointError line."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"classifier file {path} does not exist; train one with "
            f"`python scripts/train_classifier.py --run RUN_FOLDER --out {path}` (or --config CONFIG) or pass --classifier PATH"
        )
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"classifier file {path} is not a readable safetensors file ({str(exc).splitlines()[0][:120]})") from None
    if metadata.get("format") != CLASSIFIER_FORMAT:
        raise CheckpointError(f"{path} is not an imgflow classifier (no '{CLASSIFIER_FORMAT}' format tag); "
                              "write one with scripts/train_classifier.py")
    try:
        raw = json.loads(metadata["arch"])
        raw["widths"] = tuple(raw["widths"])
        arch = ClassifierArch(**raw)
        if "identity" in metadata:
            identity = json.loads(metadata["identity"])
        else:  # files written before identities: dataset, size and (away from the native size) resize
            identity = {"dataset": metadata["dataset"], "image_size": metadata["image_size"]}
            if "resize" in metadata:
                identity["resize"] = metadata["resize"]
        names = tuple(json.loads(metadata.get("class_names", "[]")))
        known = ("format", "dataset", "image_size", "identity", "class_names", "test_accuracy", "arch")
        info = ClassifierInfo(path, identity, names, float(metadata["test_accuracy"]), arch,
                              {k: v for k, v in metadata.items() if k not in known})
        model = ImageClassifier(arch)
        model.load_state_dict(tensors)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"classifier file {path} has broken metadata or weights ({type(exc).__name__}: {str(exc)[:120]})") from None
    return model.to(device).eval(), info


def check_classifier_fits(info: ClassifierInfo, identity: dict[str, str], spec: DataSpec) -> None:
    """The classifier must have been trained on the model's data: same source, size, padding/resizing, channels, classes.

    A folder's fingerprint may differ (images added since): the features still fit; the
    reference statistics, keyed by the fingerprint, are recomputed.
    """
    from imgflow.config import ConfigError

    problems = [f"{key} {info.identity.get(key, '-')} (the model's is {value})" for key, value in identity.items()
                if key != "fingerprint" and info.identity.get(key, value if key == "resize" else None) != value]
    if info.arch.in_channels != spec.channels:
        problems.append(f"{info.arch.in_channels} channels (the model's images have {spec.channels})")
    if info.arch.num_classes != max(spec.num_classes, 1) and spec.num_classes:
        problems.append(f"{info.arch.num_classes} classes (the model's data has {spec.num_classes})")
    if problems:
        raise ConfigError(f"classifier {info.path} was trained for {', '.join(problems)}; train one for this model's data with "
                          "`python scripts/train_classifier.py --run RUN_FOLDER` (or --config CONFIG)")
