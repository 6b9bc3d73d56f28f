"""The README.md model card of a model folder: YAML front matter the Hub reads, then what the model is and scored.

The front matter (huggingface_hub's `ModelCardData`) holds `library_name: imgflow`, tags, the license, the training
config's name and a `model-index` of the scores that fit it (FID(clf) as metric type `fid_clf`: it is a Fréchet
distance in a classifier's features, not Inception FID, so it is not filed as `fid`; class accuracy as `accuracy`).
The body repeats them as a table with the command, the judge and the split of each.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from imgflow.model_record import ModelRecord

#: metric name -> (model-index type, readable name)
METRICS = {"fid_clf": ("fid_clf", "FID(clf)"), "class_accuracy": ("accuracy", "class accuracy of the samples (%)")}


@dataclass(frozen=True)
class CardScore:
    """One measured number: `metric` ('fid_clf' or 'class_accuracy'), its value, the sampler it was drawn with, the judge
    (which classifier, how many samples, against what), the split of the reference and the command that measured it."""

    metric: str
    value: float
    sampler: str
    judge: str
    split: str
    command: str = ""


def _front_matter(name: str, record: ModelRecord, scores: Sequence[CardScore], license: str | None, tags: Sequence[str],
                  config_name: str) -> str:
    from huggingface_hub import EvalResult, ModelCardData

    dataset = record.spec.dataset
    task = "unconditional-image-generation"
    results = [EvalResult(task_type=task, task_name="class-conditional image generation" if record.conditional else None,
                          dataset_type=dataset, dataset_name=dataset.upper() if dataset == "mnist" else dataset,
                          dataset_split=s.split, metric_type=METRICS[s.metric][0], metric_value=s.value,
                          metric_name=f"{METRICS[s.metric][1]}, {s.sampler}", metric_config=s.judge, verified=False)
               for s in scores if s.metric in METRICS]
    kind = "flow-map" if record.flow_map else "flow-matching"
    all_tags = list(dict.fromkeys(["imgflow", kind, record.arch, dataset, *(["latent"] if record.latent else []), *tags]))
    data = ModelCardData(library_name="imgflow", license=license, tags=all_tags, pipeline_tag=task,
                         model_name=name, eval_results=results or None, training_config=config_name)
    return data.to_yaml()


def _scores_table(scores: Sequence[CardScore]) -> list[str]:
    """One row per sampler, one column per metric; the judge, split and command once below when all rows share them."""
    metrics = list(dict.fromkeys(s.metric for s in scores))
    samplers = list(dict.fromkeys(s.sampler for s in scores))
    shared = len({(s.judge, s.split, s.command) for s in scores}) == 1
    head = ["sampler", *[METRICS.get(m, (m, m))[1] for m in metrics], *([] if shared else ["judge", "split", "command"])]
    lines = [f"| {' | '.join(head)} |", "|---|" + "---:|" * len(metrics) + ("" if shared else "---|---|---|")]
    for sampler in samplers:
        rows = {s.metric: s for s in scores if s.sampler == sampler}
        first = next(iter(rows.values()))
        cells = [sampler, *[f"{rows[m].value:g}" if m in rows else "" for m in metrics]]
        if not shared:
            cells += [first.judge, first.split, f"`{first.command}`" if first.command else ""]
        lines.append(f"| {' | '.join(cells)} |")
    if shared:
        s = scores[0]
        lines += ["", f"Judge: {s.judge}. Reference split: {s.split}." + (f" Measured with `{s.command}` and each row's sampler "
                                                                              "(--solver, --steps, --guidance)." if s.command else "")]
    return lines


def model_card(name: str, record: ModelRecord, *, step: int, objective: str, config_name: str = "", description: str = "",
               scores: Sequence[CardScore] = (), license: str | None = None, tags: Sequence[str] = (), weights: str = "EMA",
               commands: Sequence[str] = (), extra: dict[str, Any] | None = None) -> str:
    """The README.md text of a model folder (module docstring). `license` None leaves the field out (the Hub then shows
    none: set it when you publish); `commands`: how the model was trained, in order."""
    settings = record.sampling_settings()
    spec = record.image_spec
    classes = f"{len(spec.class_names)} classes ({', '.join(spec.class_names[:10])}{', ...' if len(spec.class_names) > 10 else ''})"
    lines = ["---", _front_matter(name, record, scores, license, tags, config_name).rstrip(), "---", "", f"# {name}", ""]
    if description:
        lines += [description, ""]
    lines += [
        f"An imgflow model: `{record.arch}` backbone, objective `{objective or 'unknown'}`, "
        f"{'a flow map (few-step)' if record.flow_map else 'a velocity field'} on the {record.schedule} path, "
        f"{spec.channels}x{spec.image_size}x{spec.image_size} images, "
        f"{classes if record.conditional else 'unconditional'}{', in latent space' if record.latent else ''}; "
        f"{weights} weights after {step:,} training steps{f' ({config_name})' if config_name else ''}.",
        "",
        "## Use",
        "",
        "```python",
        "from imgflow import Sampler",
        f'sampler = Sampler.from_pretrained("{name}")   # a shipped name, this folder\'s path or its Hub repo id',
        'sampler.sample(16).save_grid("samples.png")',
        "```",
        "",
        f"Default sampler: {settings.solver}, {settings.steps} step(s), guidance {settings.guidance:g}. "
        f"Shell: `python scripts/sample_images.py {name} --out samples.png`.",
        "",
    ]
    if scores:
        lines += ["## Scores", "", *_scores_table(scores), ""]
    else:
        lines += ["## Scores", "", "None measured yet (scripts/evaluate.py measures FID(clf) and class accuracy).", ""]
    if commands:
        lines += ["## Training", "", *[f"{i}. `{c}`" if c.startswith("python") else f"{i}. {c}" for i, c in enumerate(commands, 1)], ""]
    for title, text in (extra or {}).items():
        lines += [f"## {title}", "", str(text), ""]
    own_codec = bool(record.latent) and record.latent.get("kind", "imgflow") == "imgflow"
    lines += ["## Files", "", "`config.json` (the model record and training config), `model.safetensors` (weights)"
              + (", `codec.safetensors` (the autoencoder that decodes the latents)" if own_codec else "") + ", this card.", ""]
    return "\n".join(lines)


__all__ = ["METRICS", "CardScore", "model_card"]
