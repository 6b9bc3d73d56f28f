"""Evaluate a checkpoint offline: `evaluate_checkpoint(...) -> EvalReport`.

For every guidance scale w it draws `num` samples with balanced labels and per-sample seeds and
reports FID(clf) against the held-out split and class accuracy; it adds the floor (the FID of
`num` real training images), the negative log-likelihood in bits/dim of held-out images, and
Inception FID where torch-fidelity and its weights are installed. Every number states the
sample count and the split it was measured against.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from imgflow.checkpoint import load_checkpoint
from imgflow.config import ConfigError
from imgflow.core.likelihood import LikelihoodSettings
from imgflow.core.sampling_settings import SamplingSettings
from imgflow.data import load_dataset
from imgflow.evaluation.fid import inception_fid, inception_status
from imgflow.evaluation.judge import REFERENCE_SPLIT, Judge
from imgflow.evaluation.likelihood import NLLResult, image_nll
from imgflow.sampler import Sampler

NLL_LABELS = ("null", "true")


@dataclass
class GuidanceResult:
    """Sample quality at one guidance scale (None for an unconditional model)."""

    guidance: float | None
    fid: float
    class_accuracy: float | None
    per_class_accuracy: list[float] | None
    num_samples: int
    nfe: int
    seconds: float
    nonfinite: int


@dataclass(frozen=True)
class NLLSettings(LikelihoodSettings):
    """How to compute bits/dim: `images` held-out images (0 = skip), the `label` to score with ("null": p(x), "true":
    p(x | y)), and how the ODE is integrated (the fields of imgflow.core.likelihood.LikelihoodSettings, its defaults)."""

    images: int = 100
    label: str = "null"

    def check(self) -> None:
        if self.images < 0:
            raise ConfigError(f"the number of NLL images must be >= 0, got {self.images}")
        if self.label not in NLL_LABELS:
            raise ConfigError(f"the NLL label must be one of {', '.join(NLL_LABELS)}, got {self.label!r}")
        try:
            super().check()
        except ValueError as exc:
            raise ConfigError(f"NLL settings: {exc}") from None


@dataclass
class EvalReport:
    """What `evaluate_checkpoint` measured (to_dict() is the JSON; lines() the printed summary)."""

    checkpoint: str
    step: int
    weights: str
    dataset: str
    image_size: int
    class_conditional: bool
    sampler: SamplingSettings
    classifier: dict[str, Any]
    reference: dict[str, Any]
    num_samples: int
    seed: int
    results: list[GuidanceResult] = field(default_factory=list)
    fid_real_train_images: float | None = None
    nll: NLLResult | None = None
    inception_fid: dict[str, Any] | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        """The summary a person reads: sampler, reference, one row per guidance scale, floor, NLL."""
        s = self.sampler
        out = [
            f"checkpoint {self.checkpoint} (step {self.step}, {self.weights} weights) | {self.dataset} "
            f"{self.image_size}x{self.image_size}, {'class-conditional' if self.class_conditional else 'unconditional'}",
            f"sampler {s.describe()} | {self.num_samples} samples per row, seed {self.seed}",
            f"classifier {self.classifier['path']} (test accuracy {self.classifier['test_accuracy']:.4f}) | reference: "
            f"{self.reference['split']} split, {self.reference['num_images']} images{' (cached)' if self.reference['cached'] else ''}",
            f"{'guidance':>8}  {'FID(clf)':>9}  {'class acc':>9}  {'sampling':>8}",
        ]
        for r in self.results:
            w = f"{r.guidance:g}" if r.guidance is not None else "-"
            acc = f"{r.class_accuracy:.4f}" if r.class_accuracy is not None else "-"
            out.append(f"{w:>8}  {r.fid:9.3f}  {acc:>9}  {r.seconds:7.0f}s")
        if self.fid_real_train_images is not None:
            out.append(f"real training images ({self.num_samples}) vs {self.reference['split']}: FID(clf) "
                       f"{self.fid_real_train_images:.3f}  (the floor at this sample size)")
        if self.inception_fid is not None:
            out.append(f"Inception FID {self.inception_fid['value']:.2f} (first guidance scale vs the {self.reference['split']} split)")
        if self.nll is not None:
            n = self.nll
            out.append(f"NLL {n.bits_per_dim:.4f} +- {n.bits_per_dim_stderr:.4f} bits/dim ({n.num_images} {self.reference['split']} "
                       f"images, {n.settings['solver']}, NFE {n.nfe}, label {n.settings['label']}) | {n.seconds:.0f} s")
        if any(r.nonfinite for r in self.results):
            out.append("warning: some samples were not finite (counted in nonfinite; scored as clamped zeros)")
        return out


def scores_from_report(report: dict[str, Any], command: str = "") -> list:
    """The model-card rows (imgflow.model_card.CardScore) of an `EvalReport.to_dict()` (what evaluate.py --json writes):
    FID(clf) and class accuracy (in %) at each guidance scale, with the judge and the reference split it was measured on,
    and the command that measures it (default: evaluate.py with the report's settings)."""
    from imgflow.model_card import CardScore

    try:
        sampler = report["sampler"]
        classifier, reference = report["classifier"], report["reference"]
        floor = report.get("fid_real_train_images")
        judge = (f"{report['num_samples']} samples (seed {report['seed']}) judged by the classifier {Path(str(classifier['path'])).name} "
                 f"(test accuracy {float(classifier['test_accuracy']):.4f}) against {reference['num_images']} {reference['split']} images"
                 + (f"; real training images score {floor:.3f} at this sample size" if floor is not None else ""))
        rows = []
        base = (f"python scripts/evaluate.py {report['checkpoint']} --classifier {classifier['path']} --num {report['num_samples']} "
                f"--seed {report['seed']} --solver {sampler['solver']} --steps {sampler['steps']}")
        for r in report["results"]:
            steps = f"{sampler['solver']} {sampler['steps']} step{'s' if sampler['steps'] != 1 else ''}"
            name = steps + (f", guidance {r['guidance']:g}" if r["guidance"] is not None else "")
            measured = command or base + (f" --guidance {r['guidance']:g}" if r["guidance"] is not None else "")
            rows.append(CardScore("fid_clf", round(float(r["fid"]), 3), name, judge, reference["split"], measured))
            if r.get("class_accuracy") is not None:
                rows.append(CardScore("class_accuracy", round(100 * float(r["class_accuracy"]), 2), name, judge, reference["split"], measured))
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"this is not a report written by evaluate.py --json (missing or odd {exc}); pass the JSON file it wrote") from None
    return rows


def evaluate_checkpoint(
    checkpoint: str | Path,
    classifier: str | Path,
    *,
    num: int = 500,
    guidance: Sequence[float] | None = None,
    solver: str | None = None,
    steps: int | None = None,
    time_grid: str | None = None,
    seed: int = 0,
    batch_size: int = 250,
    weights: str = "ema",
    data_overrides: dict[str, Any] | None = None,
    cache_dir: str | Path | None = None,
    nll: NLLSettings | None = None,
    baseline: bool = True,
    inception: bool = False,
    inception_weights: str | Path | None = None,
    device: str | None = None,
    log: Callable[[str], None] | None = None,
    **solver_options: Any,
) -> EvalReport:
    """Score a checkpoint (file or run folder) with the project classifier of its data.

    guidance: scales to sample at (default: 1 and the run's own; [1] for unconditional models).
    data_overrides: [data] keys to change from the run's (e.g. {"data_root": "../shared/data"}).
    nll: bits/dim settings (default NLLSettings(); images = 0 skips it). solver_options: the solver's own
    settings (sde_epsilon, rtol, ...; see `Sampler.settings`). Everything that can be wrong with the
    arguments is checked before any sampling.
    """
    say = log or (lambda _msg: None)
    nll = nll or NLLSettings()
    nll.check()
    if num < 2:
        raise ConfigError(f"num must be >= 2 for a covariance, got {num}")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if inception and (message := inception_status(inception_weights)) is not None:
        raise ConfigError(message)
    t0 = time.perf_counter()
    ckpt = load_checkpoint(checkpoint)
    sampler = Sampler.from_loaded(ckpt, weights, device)
    if sampler.codec is not None and nll.images > 0:
        say("note: bits/dim is skipped for a latent model (its likelihood is of latents, not of the images)")
        nll = dataclasses.replace(nll, images=0)
    data = copy.deepcopy(ckpt.config.data)
    for key, value in (data_overrides or {}).items():
        setattr(data, key, value)
    if guidance is None:
        guidance = sorted({1.0, float(ckpt.config.sample.guidance_scale)}) if sampler.conditional else [1.0]
    guidance = [float(w) for w in guidance]
    if not guidance or any(not math.isfinite(w) for w in guidance):
        raise ConfigError(f"guidance must be finite numbers, got {guidance}")
    settings = [sampler.settings(solver, steps, time_grid, w, **solver_options) for w in guidance]  # checks them all first
    judge = Judge.load(classifier, data, sampler.spec, cache_dir=cache_dir, device=sampler.device, log=say)
    say(f"reference statistics: {judge.reference.stats.n} {REFERENCE_SPLIT} images "
        f"({'cached' if not judge.reference.computed else 'computed'}: {judge.reference.cache_path})")

    report = EvalReport(
        str(ckpt.path), ckpt.step, weights, sampler.spec.dataset, sampler.spec.image_size, sampler.conditional, settings[0],
        {"path": str(judge.info.path), "test_accuracy": judge.info.test_accuracy, "identity": judge.info.identity},
        judge.describe_reference(), num, seed,
    )
    first_images = None
    for s in settings:
        say(f"sampling {num} images at guidance {s.guidance:g} ({s.describe()})...")
        samples = sampler.sample(num, guidance=s.guidance, solver=s.solver, steps=s.steps, time_grid=s.time_grid, seed=seed,
                                 batch_size=batch_size, **s.option_values())
        first_images = samples.images if first_images is None else first_images
        q = judge.score(samples.images, samples.labels)
        ca = q.class_accuracy
        report.results.append(GuidanceResult(s.guidance if sampler.conditional else None, q.fid, ca.accuracy if ca else None,
                                             ca.per_class if ca else None, num, samples.nfe, samples.seconds, q.nonfinite))
    if baseline:
        report.fid_real_train_images = judge.real_floor(num, seed)
    held_out = load_dataset(data, REFERENCE_SPLIT) if nll.images > 0 or inception else None
    if inception:
        say("Inception FID ...")
        value = inception_fid(held_out.images, first_images.clamp(-1, 1), inception_weights, sampler.device)
        report.inception_fid = {"value": value, "guidance_scale": guidance[0] if sampler.conditional else None,
                                "reference": f"{REFERENCE_SPLIT} split"}
    if nll.images > 0:
        n = min(nll.images, len(held_out))
        say(f"NLL of {n} {REFERENCE_SPLIT} images ({nll.solver}, {nll.num_probes} Hutchinson probe(s))...")
        labels = held_out.labels[:n] if held_out.labels is not None else None
        report.nll = image_nll(sampler, held_out.images[:n], labels, nll.label, nll, seed=seed, batch_size=min(batch_size, 50), log=log)
    report.seconds = time.perf_counter() - t0
    return report
