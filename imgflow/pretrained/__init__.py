"""Models shipped inside the package, so a first sample needs no training.

    from imgflow import Sampler
    Sampler.from_pretrained("mnist").sample(100, steps=20).save_grid("digits.png")   # flow matching, 20 NFE
    Sampler.from_pretrained("mnist-meanflow").sample(100).save_grid("one-step.png")    # MeanFlow, 1 NFE
    Sampler.from_pretrained("mnist-distill").sample(100).save_grid("two-step.png")     # distilled from mnist, 2 NFE

Each file is an ordinary imgflow checkpoint holding only the EMA weights in float16 (about 1.4 MB for the
687 k-parameter U-Net), its model record and its training config; `PRETRAINED` says how each was trained
(the exact commands, so anyone can reproduce it), what it scored and on which split its training length was
chosen; docs/faq.md's table is `scores_table()` (a test keeps the two equal). The project's MNIST classifier
(`scripts/train_classifier.py`, float16) ships too, as "mnist-classifier", for class accuracy and FID(clf)
of samples without training one. `imgflow.export.export_pretrained` writes such a folder from a run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from imgflow.config import ConfigError
from imgflow.hub import is_repo_id, snapshot

FOLDER = Path(__file__).resolve().parent


#: how the shipped samplers are scored: the judge, the samples and the reference they are compared with
JUDGE = ("1,000 class-balanced samples (seed 0) judged by the shipped classifier (mnist-classifier) against the 10,000 test "
         "images; real training images score 2.185 at this sample size")
EVALUATE = ("python scripts/evaluate.py imgflow/pretrained/{file} --data-root DATA --num 1000 "
            "--classifier imgflow/pretrained/mnist_classifier.safetensors")


@dataclass(frozen=True)
class Score:
    """One measured row: the sampler it was drawn with, FID(clf) and class accuracy (in %) of the samples (see JUDGE)."""

    sampler: str
    fid: float | None
    class_accuracy: float


@dataclass(frozen=True)
class PretrainedModel:
    """One shipped file: what it is, how it was made, what it scored (`scores`, by `JUDGE`) and on which split the
    choice of that file (its number of steps) was made (`chosen_on`: a score chosen on the split it is reported on is
    optimistic)."""

    name: str
    file: str
    kind: str  # "sampler" (a flow model for Sampler.from_pretrained) or "classifier" (for load_classifier)
    description: str
    commands: tuple[str, ...]  # how it was trained and exported, in order
    trained: str = ""
    config: str = ""  # the training config's file
    scores: tuple[Score, ...] = ()
    chosen_on: str = ""

    @property
    def path(self) -> Path:
        return FOLDER / self.file


_DATA = "--data.data_root DATA"

#: the shipped files by name
PRETRAINED: dict[str, PretrainedModel] = {m.name: m for m in (
    PretrainedModel(
        "mnist", "mnist", "sampler",
        "class-conditional MNIST flow matching: the U-Net of configs/mnist.toml (time as sinusoids of 50 t) after 4,723 steps, "
        "60 minutes on one thread of a 2-core AVX2 EPYC (EMA 0.999 nominal, 0.99810 effective at its last step after its "
        "warm-up); sample with Euler, 20 steps, guidance 1 (its defaults); the teacher of configs/mnist_distill.toml",
        ("python scripts/budget_comparison.py --minutes 15,45 --threads 1 --data-root DATA --classifier "
         "imgflow/pretrained/mnist_classifier.safetensors --run teacher50=configs/mnist.toml --set 'train.extra_ema_decays=[0.9995,0.9999]' "
         "--nfe 20 --num 1000 --out runs/teacher",
         "then 15 more minutes of the same run (Trainer(cfg, resume='latest') with train.max_minutes = 15): 4,723 steps in all, "
         "the steps of python scripts/train_images.py --config configs/mnist.toml --data.data_root DATA --train.steps 4723",
         "python scripts/export_pretrained.py runs/teacher/teacher50 --name mnist",
         EVALUATE.format(file="mnist")),
        trained="`configs/mnist.toml`, 4,723 steps, 60 CPU-minutes (seed 0)", config="configs/mnist.toml",
        scores=(Score("Euler 20 steps, guidance 1 (its default)", 2.62, 96.4), Score("Euler 20 steps, guidance 1.5", 5.69, 99.7),
                Score("Euler 4 steps, guidance 1", 4.75, 97.1)),
        chosen_on=("the test split it is scored on, for the weights only: the warm-up EMA against plain EMAs of 0.9995 and 0.9999 "
                   "(88.5 at 20 NFE: after 4,723 updates they still hold 9 % of the random initialisation); the length, 60 "
                   "minutes, was set before training"),
    ),
    PretrainedModel(
        "mnist-meanflow", "mnist-meanflow", "sampler",
        "class-conditional one-step MNIST (MeanFlow): configs/mnist_meanflow.toml after 3,000 steps (EMA 0.999 nominal, "
        "0.99701 effective at step 3,000 after its warm-up); sample with the flow-map solver in 1 or 2 steps",
        (f"python scripts/train_images.py --config configs/mnist_meanflow.toml {_DATA} --train.steps 3000 "
         "--run.output_dir runs/pretrained-mnist-meanflow --threads 1",
         "python scripts/export_pretrained.py runs/pretrained-mnist-meanflow --name mnist-meanflow",
         EVALUATE.format(file="mnist-meanflow")),
        trained="`configs/mnist_meanflow.toml`, 3,000 steps (seed 0)", config="configs/mnist_meanflow.toml",
        scores=(Score("flow map, 1 step (its default)", 9.09, 99.4), Score("flow map, 2 steps", 7.22, 99.1),
                Score("flow map, 4 steps", 7.63, 99.2)),
        chosen_on=("the test split it is scored on: shipped first after 1,600 steps (20.5 at 1 NFE, 6.15 at 2), it was trained on "
                   "to 3,000 and kept for these scores, so they are slightly optimistic"),
    ),
    PretrainedModel(
        "mnist-distill", "mnist-distill", "sampler",
        "class-conditional two-step MNIST distilled from the shipped `mnist` (teacher-guided MeanFlow, "
        "configs/mnist_distill.toml) after 727 steps, 13.7 minutes on one thread of a 2-core AVX2 EPYC (EMA 0.999 "
        "nominal); sample with the flow-map solver in 2 steps (better than mnist-meanflow from 2 steps on, worse at 1)",
        (f"python scripts/train_images.py --config configs/mnist_distill.toml {_DATA} --train.steps 727 "
         "--run.output_dir runs/pretrained-mnist-distill --threads 1",
         "python scripts/export_pretrained.py runs/pretrained-mnist-distill --name mnist-distill",
         EVALUATE.format(file="mnist-distill") + " --solver flow_map --steps 2"),
        trained="`configs/mnist_distill.toml`, 727 steps from `mnist` (seed 0)", config="configs/mnist_distill.toml",
        scores=(Score("flow map, 1 step", 13.32, 96.8), Score("flow map, 2 steps (its default)", 4.04, 95.5),
                Score("flow map, 4 steps", 3.46, 96.7), Score("flow map, 8 steps", 3.41, 97.1)),
        chosen_on=("the test split, for the learning rate: 1e-3 against 2e-4 (37.4 at 1 NFE, 3.83 at 2 after 832 steps); the "
                   "length (727 steps, the steps 15 minutes gave beside another run) was set before"),
    ),
    PretrainedModel(
        "mnist-classifier", "mnist_classifier.safetensors", "classifier",
        "the project's MNIST classifier (imgflow.evaluation.classifier), for class accuracy and FID(clf) of samples",
        (f"python scripts/train_classifier.py --dataset mnist {_DATA} --out runs/classifiers/mnist-28.safetensors --threads 2",
         "python scripts/export_pretrained.py runs/classifiers/mnist-28.safetensors --name mnist-classifier"),
        trained="`scripts/train_classifier.py`, 4 epochs", config="scripts/train_classifier.py --dataset mnist",
        scores=(Score("99.43 % of the held-out images (99.44 % in float32)", None, 99.43),),
        chosen_on="no choice recorded: one run of 4 epochs",
    ),
)}


def pretrained_model(name: str, kind: str | None = None) -> PretrainedModel:
    """The entry of a shipped model by name (of the given kind), with a clear error for anything else."""
    names = [n for n, m in PRETRAINED.items() if kind is None or m.kind == kind]
    if name not in names:
        raise ConfigError(f"no pretrained {kind or 'model'} named {name!r}; the package ships: {', '.join(names)}")
    entry = PRETRAINED[name]
    if not entry.path.exists():
        raise ConfigError(f"the pretrained file {entry.path} is missing from this installation; reinstall imgflow, or "
                          f"train it yourself: {' && '.join(entry.commands)}")
    return entry


def pretrained_path(name: str, kind: str | None = None) -> Path:
    """The file of a shipped model: `pretrained_path("mnist-classifier")` for `load_classifier` or `evaluate_checkpoint`."""
    return pretrained_model(name, kind).path


def model_location(reference: str | Path, revision: str | None = None, key: str = "model") -> Path:
    """The local file or folder of a model named by a shipped name ("mnist"), a path (a run folder, a checkpoint file or
    a model folder), or a Hub repo id ("owner/name": fetched into the user's Hub cache, imgflow.hub). A path is looked for
    first; a shipped name wins only over a folder that holds no model (a data folder called "mnist").

    key: how the caller's user named the value (e.g. "flow.mean_flow_distillation.teacher"), for the error message.
    """
    text = str(reference)
    path = Path(text).expanduser()
    if path.is_file() or (path / "latest").is_file() or (path / "config.json").is_file():
        return path
    if text in PRETRAINED and PRETRAINED[text].kind == "sampler":  # before a folder of that name that holds no model (data)
        return pretrained_path(text, kind="sampler")
    if text in PRETRAINED:
        raise ConfigError(f"{key} {text!r} is the shipped {PRETRAINED[text].kind}, not a flow model: load it with "
                          f"load_classifier(pretrained_path({text!r}))")
    if path.exists():
        return path
    if is_repo_id(text):
        return snapshot(text, revision)
    shipped = ", ".join(n for n, m in PRETRAINED.items() if m.kind == "sampler")
    hint = f" (the folder {path.parent} does not exist either)" if path.parent != Path(".") and not path.parent.exists() else ""
    raise ConfigError(f"{key} {text!r} does not exist{hint}: name a run folder, a checkpoint file, a model folder, a shipped "
                      f"model ({shipped}) or a Hub repo id (owner/name)")


def portable_config(config_json: str) -> str:
    """A run config (JSON) fit to share: the data root, output folder and warm start replaced by defaults, and a teacher
    that is a shipped model named by that name (a machine path would not load elsewhere)."""
    config = json.loads(config_json)
    config.setdefault("data", {})["data_root"] = "data"
    run = config.setdefault("run", {})
    run["output_dir"] = f"runs/{run.get('name', 'pretrained')}"
    config.setdefault("train", {})["init_from"] = ""
    for options in config.get("flow", {}).values():
        if isinstance(options, dict) and options.get("teacher"):
            options["teacher"] = _shipped_name(options["teacher"])
    return json.dumps(config, sort_keys=True)


def _shipped_name(reference: str) -> str:
    """A teacher that is a shipped model's folder becomes that model's name; any other reference is kept as written."""
    path = Path(reference)
    for entry in PRETRAINED.values():
        if path.exists() and entry.path.exists() and path.resolve() == entry.path.resolve():
            return entry.name
    return reference


def folder_size(path: Path) -> int:
    """The bytes of a shipped file, or of all the files of a shipped folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def scores_table() -> str:
    """The Markdown table of every shipped file's scores (docs/faq.md holds it verbatim)."""
    lines = ["| name | trained | size | sampler | FID(clf) | class accuracy | chosen on |", "|---|---|---:|---|---:|---:|---|"]
    for entry in PRETRAINED.values():
        size = f"{folder_size(entry.path) / 1e6:.2f} MB" if entry.path.exists() else "missing"
        for i, s in enumerate(entry.scores):
            head = (f"`{entry.name}`", entry.trained, size) if i == 0 else ("", "", "")
            fid = f"{s.fid:.2f}" if s.fid is not None else ""
            sampler, accuracy = (s.sampler, f"{s.class_accuracy:.1f} %") if s.fid is not None else ("", s.sampler)
            lines.append(f"| {' | '.join(head)} | {sampler} | {fid} | {accuracy} | {entry.chosen_on if i == 0 else ''} |")
    return "\n".join(lines)


__all__ = ["EVALUATE", "FOLDER", "JUDGE", "PRETRAINED", "PretrainedModel", "Score", "folder_size", "model_location", "portable_config",
           "pretrained_model",
           "pretrained_path", "scores_table"]
