"""Evaluation of image flow models: classifier FID, class accuracy of guided samples, NLL in bits/dim.

- `classifier`: the small CNN (`ImageClassifier`, `features`) and its training / files.
- `fid`: Fréchet distance of Gaussian feature fits, cached reference statistics, optional Inception FID.
- `judge`: `Judge`, the classifier and reference statistics of one dataset, scoring any sample set.
- `class_accuracy`: does guidance on label y produce y?
- `likelihood`: bits/dim of images under the probability-flow ODE.
- `report`: `evaluate_checkpoint(...) -> EvalReport`.
- `sweep`: quality against NFE for every solver and grid (`sweep_checkpoint`, `nfe_sweep`, table, plot).

The likelihood math itself is shared and lives in `imgflow.core.likelihood`; comparisons that train as well as
judge (`budget_comparison`) live in `imgflow.experiments`.
"""

from imgflow.evaluation.class_accuracy import ClassAccuracy, accuracy_from_predictions, class_accuracy, class_accuracy_of_samples
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
from imgflow.evaluation.judge import Judge, SampleQuality
from imgflow.evaluation.likelihood import NLLResult, image_nll
from imgflow.evaluation.report import EvalReport, GuidanceResult, NLLSettings, evaluate_checkpoint
from imgflow.evaluation.sweep import SweepReport, SweepRow, nfe_sweep, plot_sweep, sweep_checkpoint, sweep_plan, sweep_table

__all__ = [name for name in dir() if not name.startswith("_")]
