"""How the project scores samples: classifier FID against a dataset's held-out split, and class accuracy.

A `Judge` holds the project classifier of one dataset and the feature statistics of that
dataset's held-out split ("test": the official test split of a torchvision dataset, the
deterministic hold-out of an image folder). It scores any set of samples of that data and
reports the floor: the FID of the same number of real training images, which a perfect
generator would score at that sample size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from imgflow.data import DataSpec, data_identity, load_dataset
from imgflow.evaluation.class_accuracy import ClassAccuracy, class_accuracy_of_samples
from imgflow.evaluation.classifier import ClassifierInfo, ImageClassifier, check_classifier_fits, extract_features, load_classifier
from imgflow.evaluation.fid import FeatureStats, ReferenceStats, feature_statistics, frechet_distance, reference_statistics

#: the split samples are compared with
REFERENCE_SPLIT = "test"


@dataclass
class SampleQuality:
    """FID(clf) of a sample set against the reference split, and its class accuracy when labelled."""

    fid: float
    class_accuracy: ClassAccuracy | None
    num_samples: int
    nonfinite: int  # samples with NaN/Inf (replaced by 0 before scoring)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"fid": self.fid, "num_samples": self.num_samples, "nonfinite_samples": self.nonfinite}
        if self.class_accuracy is not None:
            ca = self.class_accuracy
            out.update(class_accuracy=ca.accuracy, per_class_accuracy=ca.per_class, confusion=ca.confusion)
        return out


class Judge:
    """Scores samples of one dataset with its project classifier.

    Args:
        classifier: the classifier.
        info: what its file says.
        reference: feature statistics of the held-out split (`reference_statistics`).
        data: the [data] section the reference came from (for the real-image floor).
        spec: the data's shape and classes.
    """

    def __init__(self, classifier: ImageClassifier, info: ClassifierInfo, reference: ReferenceStats, data: Any, spec: DataSpec,
                 device: torch.device | str = "cpu") -> None:
        self.classifier, self.info, self.reference = classifier, info, reference
        self.data, self.spec, self.device = data, spec, device
        self._floors: dict[tuple[int, int], float] = {}

    @classmethod
    def load(cls, classifier_path: str | Path, data: Any, spec: DataSpec, *, cache_dir: str | Path | None = None,
             device: torch.device | str = "cpu", log: Callable[[str], None] | None = None) -> Judge:
        """The judge of the data a config's [data] section describes; the classifier must have been trained on it."""
        classifier, info = load_classifier(classifier_path, device)
        check_classifier_fits(info, data_identity(data), spec)
        reference = reference_statistics(classifier_path, classifier.features, data, REFERENCE_SPLIT, cache_dir, device, log)
        return cls(classifier, info, reference, data, spec, device)

    @property
    def reference_stats(self) -> FeatureStats:
        return self.reference.stats

    def describe_reference(self) -> dict[str, Any]:
        """Which split the FIDs are measured against, and how many images it has."""
        return {"split": REFERENCE_SPLIT, "num_images": self.reference.stats.n, "cache": str(self.reference.cache_path),
                "cached": not self.reference.computed}

    def fid_of(self, images: Tensor) -> float:
        """FID(clf) of images (uint8, or float in [-1, 1]) against the reference split."""
        return frechet_distance(feature_statistics(extract_features(self.classifier, images, device=self.device)), self.reference.stats)

    def score(self, images: Tensor, labels: Tensor | None = None) -> SampleQuality:
        """Clamp samples to [-1, 1] (what a saved image shows), then FID(clf) and, with labels, class accuracy."""
        bad = int((~torch.isfinite(images.flatten(1))).any(1).sum())
        images = torch.nan_to_num(images, nan=0.0, posinf=1.0, neginf=-1.0).clamp(-1, 1)
        accuracy = None
        if labels is not None:
            accuracy = class_accuracy_of_samples(self.classifier, images, labels, self.info.arch.num_classes, device=self.device)
        return SampleQuality(self.fid_of(images), accuracy, images.shape[0], bad)

    def real_floor(self, num: int, seed: int = 0) -> float:
        """FID(clf) of `num` random real training images against the reference: the small-sample floor."""
        if (num, seed) not in self._floors:
            train = load_dataset(self.data, "train").images
            idx = torch.randperm(train.shape[0], generator=torch.Generator().manual_seed(seed))[:num]
            self._floors[(num, seed)] = self.fid_of(train[idx])
        return self._floors[(num, seed)]
