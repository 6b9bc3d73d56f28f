"""Does guidance on label y produce y? Class accuracy of class-conditional samples.

Samples are drawn with balanced labels (cycling through the classes, so any N has N // K or
N // K + 1 per class), classified by the project classifier, and compared with the label they
were conditioned on. The accuracy of the classifier on real test images (99 % on MNIST) bounds
what a perfect generator can score; chance level is 1 / num_classes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from imgflow.sampler import Sampler

#: images in [-1, 1] (B, C, H, W) -> logits (B, num_classes)
Classify = Callable[[Tensor], Tensor]


@dataclass
class ClassAccuracy:
    """Accuracy of samples conditioned on `labels` as judged by a classifier."""

    accuracy: float
    per_class: list[float]  # accuracy for each conditioning label (nan where none was drawn)
    confusion: list[list[int]]  # confusion[y][k]: samples conditioned on y classified as k
    num_samples: int
    guidance_scale: float | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def accuracy_from_predictions(predicted: Tensor, labels: Tensor, num_classes: int,
                              guidance_scale: float | None = None) -> ClassAccuracy:
    """Overall and per-label accuracy plus the confusion matrix of predicted vs conditioning labels."""
    predicted, labels = predicted.long().cpu(), labels.long().cpu()
    if predicted.shape != labels.shape:
        raise ValueError(f"{predicted.shape[0]} predictions for {labels.shape[0]} labels")
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    confusion.index_put_((labels, predicted), torch.ones_like(labels), accumulate=True)
    counts = confusion.sum(1)
    diag = confusion.diagonal()
    per_class = [float(d) / float(c) if c > 0 else float("nan") for d, c in zip(diag.tolist(), counts.tolist())]
    acc = float((predicted == labels).double().mean()) if labels.numel() else float("nan")
    return ClassAccuracy(acc, per_class, confusion.tolist(), int(labels.numel()), guidance_scale)


@torch.inference_mode()
def classify_images(classify: Classify, images: Tensor, batch_size: int = 500, device: torch.device | str = "cpu") -> Tensor:
    """Predicted labels (N,) of images in [-1, 1]."""
    if isinstance(classify, nn.Module):
        classify.eval()
    out = [classify(images[i : i + batch_size].to(device).float()).argmax(1).cpu() for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out)


def class_accuracy_of_samples(classify: Classify, images: Tensor, labels: Tensor, num_classes: int,
                              guidance_scale: float | None = None, device: torch.device | str = "cpu") -> ClassAccuracy:
    """Classify samples and compare with the labels they were drawn for."""
    return accuracy_from_predictions(classify_images(classify, images, device=device), labels, num_classes, guidance_scale)


def class_accuracy(sampler: Sampler, classify: Classify, guidance_scales: list[float], num_per_class: int, *,
                   solver: str | None = None, steps: int | None = None, time_grid: str | None = None, seed: int = 0,
                   batch_size: int = 256) -> list[ClassAccuracy]:
    """For each guidance scale w: sample num_per_class images of every class and report the accuracy.

    The same per-sample noise seeds are used for every w, so differences come from guidance alone.
    """
    k = sampler.spec.num_classes
    out = []
    for w in guidance_scales:
        samples = sampler.sample(num_per_class * k, guidance=w, solver=solver, steps=steps, time_grid=time_grid, seed=seed,
                                 batch_size=batch_size)
        out.append(class_accuracy_of_samples(classify, samples.images, samples.labels, k, float(w), sampler.device))
    return out
