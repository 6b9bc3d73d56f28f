"""Evaluation of image flow models: classifier FID, class accuracy of guided samples, NLL in bits/dim.

- `classifier`: the small CNN (`ImageClassifier`, `features`) and its training / files.
- `fid`: Fréchet distance of Gaussian feature fits, cached reference statistics, optional Inception FID.
- `class_accuracy`: does guidance on label y produce y?
- `runner`: loading, sampling and scoring shared by scripts/evaluate.py and scripts/nfe_sweep.py.

The likelihood itself is shared math and lives in `imgflow.core.likelihood`.
"""

from imgflow.evaluation.class_accuracy import (
    ClassAccuracy,
    accuracy_from_predictions,
    balanced_labels,
    class_accuracy,
    class_accuracy_of_samples,
)
from imgflow.evaluation.classifier import (
    ClassifierArch,
    ClassifierInfo,
    ImageClassifier,
    extract_features,
    load_classifier,
    predict,
    save_classifier,
    train_classifier,
)
from imgflow.evaluation.fid import (
    FeatureStats,
    InceptionUnavailable,
    feature_statistics,
    frechet_distance,
    inception_fid,
    inception_status,
    reference_statistics,
)

__all__ = [name for name in dir() if not name.startswith("_")]
