"""Export a model to ship or share: a flow model as a model folder (imgflow.model_folder), a classifier as one file.

    from imgflow.export import export_pretrained
    export_pretrained("runs/mnist", "my-mnist")                          # float16 EMA weights, config.json, card
    export_pretrained("runs/mnist", "my-mnist", scores=rows, license="mit", overwrite=True)

`scripts/export_pretrained.py` is its command line; `--name` writes a shipped model (`imgflow.pretrained.PRETRAINED`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from imgflow.config import ConfigError
from imgflow.files import atomic_save_safetensors
from imgflow.model_card import CardScore
from imgflow.pretrained import JUDGE, PretrainedModel
from imgflow.sampler import Sampler


def card_scores(entry: PretrainedModel) -> list[CardScore]:
    """A shipped model's scores as model-card rows (imgflow.model_card.CardScore), judged as JUDGE says."""
    command = next((c for c in entry.commands if c.startswith("python scripts/evaluate.py")), "")
    command = command.split(" --solver")[0]
    rows = []
    for s in entry.scores:
        if s.fid is not None:
            rows.append(CardScore("fid_clf", s.fid, s.sampler, JUDGE, "test", command))
            rows.append(CardScore("class_accuracy", s.class_accuracy, s.sampler, JUDGE, "test", command))
    return rows


def export_pretrained(source: str | Path, out: str | Path, *, weights: str = "ema", dtype: torch.dtype | None = torch.float16,
                      note: str = "", entry: PretrainedModel | None = None, overwrite: bool = False, **card) -> Path:
    """Write what to ship or share: a flow model as a model folder (imgflow.model_folder, by `Sampler.save_pretrained`:
    `weights`, default the EMA, in `dtype`), or a classifier as one file in `dtype`.

    source: a run folder, checkpoint file or model folder (the optimiser state and the other weights are dropped, machine
    paths in the config replaced by defaults), or a classifier file. entry: the shipped model it becomes (its
    description, commands and scores fill the card); `card`: more model-card fields (scores, license, tags,
    description, config_name, name: see save_pretrained). The result loads with `Sampler.from_pretrained(out)` /
    `load_classifier`. Returns `out`.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    source = Path(source)
    if source.is_file() and source.suffix == ".safetensors":
        with safe_open(str(source), framework="pt") as fh:
            metadata = fh.metadata() or {}
        if metadata.get("format", "").startswith("imgflow-classifier"):
            tensors = {k: v.to(dtype) if dtype is not None and v.is_floating_point() else v for k, v in load_file(str(source)).items()}
            return _write(out, tensors, {**metadata, **({"note": note} if note else {})})
    if Path(out).suffix == ".safetensors":
        raise ConfigError(f"{out} names a .safetensors file, and a flow model is exported as a model folder (config.json, "
                          "model.safetensors, README.md): name a folder instead")
    if entry is not None:
        card = {"name": entry.name, "description": entry.description, "scores": card_scores(entry), "commands": entry.commands,
                "config_name": entry.config, "license": "mit", **card}
    sampler = Sampler.from_checkpoint(source, weights, device="cpu")
    return sampler.save_pretrained(out, dtype=dtype, overwrite=overwrite, **card)



def _write(out: str | Path, tensors: dict, metadata: dict[str, str]) -> Path:
    out = Path(out)
    if not out.parent.is_dir():
        raise ConfigError(f"output folder {out.parent} does not exist; create it or write elsewhere")
    atomic_save_safetensors(out, tensors, metadata)
    return out


__all__ = ["card_scores", "export_pretrained"]
