"""Model folders in the Hugging Face Hub's layout: what `Sampler.save_pretrained` writes and `from_pretrained` reads.

    my-model/
        config.json          the model record (backbone and its options, path, prediction, flow map or not, data
                             shape and class names, default sampler, codec if latent), the objective, the training
                             step, the weights' dtype and digest, and the full training config
        model.safetensors    the network's weights (EMA by default) under the network's own parameter names
        codec.safetensors    a latent model's autoencoder (imgflow's own; a diffusers VAE is referenced instead)
        README.md            the model card: YAML front matter (library_name, tags, license, model-index) and scores

This is the layout of huggingface_hub's `PyTorchModelHubMixin` (config.json + model.safetensors + card), so a
folder can be pushed with `huggingface_hub.upload_folder` as it is. `format_version` says which layout a folder
has; a folder from a newer imgflow is refused in one line rather than half-read.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor

from imgflow.data.spec import DataSpec
from imgflow.digests import weights_digest
from imgflow.errors import CheckpointError
from imgflow.model_record import ModelRecord
from imgflow.nn.backbones import BACKBONES

FOLDER_FORMAT = "imgflow-model"
FOLDER_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CODEC_FILE = "codec.safetensors"
CARD_FILE = "README.md"


@dataclass
class FolderContents:
    """What a model folder holds, read and checked: `weights` and `codec_weights` as state dicts."""

    folder: Path
    record: ModelRecord
    spec: DataSpec
    step: int
    config_json: str  # the training config, as JSON
    weights: dict[str, Tensor]
    codec_weights: dict[str, Tensor]
    info: dict[str, Any]  # the rest of config.json (objective, dtype, where the weights came from)


def is_model_folder(path: str | Path) -> bool:
    """Whether `path` is a folder whose config.json says it is an imgflow model folder (a run folder's config.json does not)."""
    config = Path(path) / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("format") == FOLDER_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def meant_as_model_folder(path: str | Path) -> bool:
    """Whether a folder without a run's `latest` pointer is meant as a model folder: it has model.safetensors, or a
    config.json that is not a run's (a run folder's config.json has a [train] section): it is then read as one, so its
    problem is named (a missing config.json, a foreign or newer one) rather than "no checkpoint"."""
    folder = Path(path)
    if is_model_folder(folder) or (folder / WEIGHTS_FILE).is_file():
        return True
    config = folder / CONFIG_FILE
    if not config.is_file():
        return False
    try:
        raw = json.loads(config.read_text())
    except (OSError, ValueError):
        return True
    return not (isinstance(raw, dict) and "train" in raw)


def _read_config(folder: Path) -> dict[str, Any]:
    config = folder / CONFIG_FILE
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist; pass a folder written by Sampler.save_pretrained, a run "
                              "folder, a checkpoint file, a shipped model's name or a Hub repo id")
    if not config.is_file():
        raise CheckpointError(f"{folder} has no {CONFIG_FILE}: it is not a model folder (a partial download? expected "
                              f"{CONFIG_FILE}, {WEIGHTS_FILE} and {CARD_FILE})")
    try:
        raw = json.loads(config.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{config} cannot be read ({exc}); download or write the folder again") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it by hand or write the folder "
                              "again with save_pretrained") from None
    if not isinstance(raw, dict) or raw.get("format") != FOLDER_FORMAT:
        found = raw.get("_class_name") or raw.get("format") if isinstance(raw, dict) else None
        raise CheckpointError(f"{config} is not an imgflow model config (no \"format\": \"{FOLDER_FORMAT}\""
                              f"{f'; it describes {found!r}' if found else ''}); pass a folder written by Sampler.save_pretrained")
    version = raw.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{config} has no valid format_version (got {version!r}); write the folder again with save_pretrained")
    if version > FOLDER_VERSION:
        raise CheckpointError(f"{config} has format version {version}, written by a newer imgflow ({raw.get('imgflow_version', '?')}); "
                              f"this one reads up to {FOLDER_VERSION}: pip install -U imgflow")
    return raw


def _record(raw: dict[str, Any], config: Path) -> ModelRecord:
    record = raw.get("model_record")
    if not isinstance(record, dict):
        raise CheckpointError(f"{config} has no model_record; write the folder again with save_pretrained")
    if record.get("arch") not in BACKBONES:
        raise CheckpointError(f"{config} names backbone {record.get('arch')!r}, which this version does not have (it has: "
                              f"{', '.join(sorted(BACKBONES))}); upgrade imgflow or install the package that registers it")
    try:
        return ModelRecord.from_json(json.dumps(record))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{config} has an invalid model_record ({exc}); write the folder again with save_pretrained") from None


def _tensors(path: Path, what: str) -> dict[str, Tensor]:
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the model folder is partial (an interrupted download or copy?); fetch or "
                              f"write it again ({what})")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path} is not a readable safetensors file (truncated or damaged? {str(exc).splitlines()[0][:100]}); "
                              "fetch or write the folder again") from None


def read_model_folder(folder: str | Path, read_tensors: bool = True) -> FolderContents:
    """Read and check a model folder: one CheckpointError naming the file and the problem for anything wrong (no folder,
    no or foreign config.json, a newer format, an unknown backbone, missing or damaged weights, weights that are not
    the ones config.json's digest names). Weights that do not fit the backbone are reported when they are loaded."""
    folder = Path(folder)
    raw = _read_config(folder)
    config = folder / CONFIG_FILE
    record = _record(raw, config)
    weights: dict[str, Tensor] = {}
    codec: dict[str, Tensor] = {}
    info = raw.get("weights", {})
    if read_tensors:
        weights = _tensors(folder / WEIGHTS_FILE, "the network's weights")
        if info.get("digest") and weights_digest(weights) != info["digest"]:
            raise CheckpointError(f"{folder / WEIGHTS_FILE} is not the file {config} describes (its digest differs: replaced or "
                                  "damaged); fetch or write the folder again")
        if record.latent and record.latent.get("kind", "imgflow") == "imgflow":
            codec = _tensors(folder / CODEC_FILE, "the latent model's autoencoder")
    elif not (folder / WEIGHTS_FILE).is_file():
        _tensors(folder / WEIGHTS_FILE, "the network's weights")
    training = raw.get("training_config", {})
    rest = {k: v for k, v in raw.items() if k not in ("model_record", "training_config")}
    return FolderContents(folder, record, record.spec, int(raw.get("step", 0)), json.dumps(training, sort_keys=True), weights,
                          codec, rest)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("imgflow")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown"


def write_model_folder(folder: str | Path, *, record: ModelRecord, weights: dict[str, Tensor], config_json: str, step: int,
                       card: str, codec_weights: dict[str, Tensor] | None = None, dtype: torch.dtype | None = torch.float16,
                       source: str = "ema", overwrite: bool = False) -> Path:
    """Write a model folder (module docstring) atomically: into a temporary sibling, then renamed into place.

    dtype: the floating weights' dtype (None keeps theirs; the codec keeps float32 whatever it is). An existing folder
    is replaced only with overwrite=True, and only once the new one is complete.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CheckpointError(f"{folder} exists; choose another folder or pass overwrite=True (--overwrite) to replace it")
    if not folder.parent.is_dir():
        raise CheckpointError(f"the folder {folder.parent} does not exist; create it or write the model folder elsewhere")
    cast = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().cpu().contiguous() for k, v in weights.items()}
    training = json.loads(config_json) if config_json else {}
    payload = {
        "format": FOLDER_FORMAT,
        "format_version": FOLDER_VERSION,
        "imgflow_version": _version(),
        "library_name": "imgflow",
        "objective": (training.get("flow") or {}).get("objective", ""),
        "step": step,
        "weights": {"file": WEIGHTS_FILE, "source": source, "dtype": str(next(iter(cast.values())).dtype).removeprefix("torch.")
                    if cast else "", "digest": weights_digest(cast)},
        **({"codec_file": CODEC_FILE} if codec_weights else {}),
        "model_record": json.loads(record.to_json()),
        "training_config": training,
    }
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(cast, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if codec_weights:
            save_file({k: v.detach().cpu().contiguous() for k, v in codec_weights.items()}, str(tmp / CODEC_FILE), metadata={"format": "pt"})
        (tmp / CONFIG_FILE).write_text(json.dumps(payload, indent=2, sort_keys=False) + "\n")
        (tmp / CARD_FILE).write_text(card)
        if folder.exists():
            old = folder.parent / f".{folder.name}.old-{os.getpid()}"
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write the model folder {folder} ({exc.strerror or exc}); free space or write elsewhere") from None
    return folder


__all__ = ["CARD_FILE", "CODEC_FILE", "CONFIG_FILE", "FOLDER_FORMAT", "FOLDER_VERSION", "WEIGHTS_FILE", "FolderContents",
           "is_model_folder", "meant_as_model_folder", "read_model_folder", "write_model_folder"]
