"""Safetensors checkpoints: atomic writes, a `latest` pointer, keep-last-N, clear load errors.

One file per checkpoint, `ckpt-00001000.safetensors`, holds tensors under prefixes
`model.` (raw weights), `ema.` (EMA weights), `optimizer.` (optimiser state tensors), `autoencoder.`
(for a latent model: the autoencoder that decodes its samples), and
the metadata strings `format`, `config` (the full run configuration as JSON), `model_record`
(what sampling needs on its own: `imgflow.model_record.ModelRecord`), `data_spec` (channels, size and
class names of the training data), `step`, `optimizer`, `scheduler` and
`grad_scaler` (JSON of their non-tensor state; the scaler only under fp16). A file is written to a
temporary name, flushed to disk and renamed; the `latest` text file is replaced the same way,
so a run killed at any instant leaves the previous checkpoint loadable and `latest` valid.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor

from imgflow.config import ConfigError, RunConfig
from imgflow.data import DataSpec, dataset_spec
from imgflow.errors import CheckpointError
from imgflow.files import atomic_save_safetensors, atomic_write_bytes
from imgflow.model_folder import CONFIG_FILE, FolderContents, meant_as_model_folder, read_model_folder
from imgflow.model_record import ModelRecord, record_from_config

FORMAT = "imgflow-checkpoint-1"
LATEST = "latest"
_NAME = re.compile(r"^ckpt-(\d{8,})\.safetensors$")


class CheckpointWriteError(CheckpointError):
    """A checkpoint could not be written (disk full, folder gone); the previous one is intact."""


@dataclass
class Checkpoint:
    """The contents of one checkpoint file.

    `record` is what sampling needs (built from it alone); `config` is the training config as far as this
    version can read it (keys that moved are mapped, unknown ones dropped, nothing range-checked);
    `training_config()` reads it strictly, as resuming needs.
    """

    path: Path
    config: RunConfig
    step: int
    model: dict[str, Tensor]
    ema: dict[str, Tensor]
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    extra: dict[str, str] = field(default_factory=dict)
    spec: DataSpec | None = None
    grad_scaler: dict[str, Any] | None = None
    record: ModelRecord | None = None
    config_json: str = ""
    autoencoder: dict[str, Tensor] = field(default_factory=dict)
    extra_ema: dict[str, dict[str, Tensor]] = field(default_factory=dict)  # "ema@<decay>" -> weights (train.extra_ema_decays)

    def training_config(self) -> RunConfig:
        """The run configuration, validated as a new run's would be (for resuming): a CheckpointError if it no longer is."""
        try:
            return RunConfig.from_json(self.config_json, source=f"{self.path.name} metadata")
        except (json.JSONDecodeError, ConfigError) as exc:
            raise CheckpointError(f"cannot resume from {self.path}: its training config is not valid in this version ({exc}); "
                                  "sample from it, or start a new run.output_dir") from None

    @property
    def weight_choices(self) -> tuple[str, ...]:
        """The names `weights` takes: 'ema', 'raw' (unless the file holds the EMA alone, as a shipped model does) and one
        'ema@<decay>' per extra EMA the run kept."""
        return ("ema", *(("raw",) if self.model or not self.ema else ()), *sorted(self.extra_ema))

    def weights(self, which: str = "ema") -> dict[str, Tensor]:
        """The 'ema' weights (falling back to raw ones when the run kept no EMA), the 'raw' ones, or an extra EMA 'ema@<decay>'."""
        if which not in self.weight_choices:
            raise ValueError(f"weights must be one of {', '.join(self.weight_choices)} for {self.path.name}, got {which!r}")
        if which in self.extra_ema:
            return self.extra_ema[which]
        return self.ema if which == "ema" and self.ema else self.model


def extra_ema_name(decay: float) -> str:
    """The name an extra EMA of decay d goes by (weights='ema@0.99'); its tensors are stored as 'ema@0_99.<key>'."""
    return f"ema@{decay:g}"


def _group_of(name: str) -> str:
    return name.replace(".", "_")


# --- writing --------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"ckpt-{step:08d}.safetensors"


def _split_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Optimizer state_dict -> (tensors keyed optimizer.<param>.<name>, JSON-able rest)."""
    tensors: dict[str, Tensor] = {}
    rest: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for idx, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{idx}.{name}"] = value
            else:
                rest["state"].setdefault(str(idx), {})[name] = value
    return tensors, rest


def _join_optimizer(tensors: dict[str, Tensor], rest: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in rest.get("state", {}).items()}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    return {"state": state, "param_groups": rest["param_groups"]}


def save_checkpoint(
    run_dir: Path,
    step: int,
    config: RunConfig,
    model_state: dict[str, Tensor],
    ema_state: dict[str, Tensor] | None = None,
    optimizer_state: dict[str, Any] | None = None,
    scheduler_state: dict[str, Any] | None = None,
    keep_last: int = 0,
    extra_metadata: dict[str, str] | None = None,
    spec: DataSpec | None = None,
    grad_scaler_state: dict[str, Any] | None = None,
    record: ModelRecord | None = None,
    autoencoder_state: dict[str, Tensor] | None = None,
    extra_ema_states: dict[str, dict[str, Tensor]] | None = None,
) -> Path:
    """Write ckpt-<step>.safetensors atomically, point `latest` at it, prune to keep_last (0 = keep all)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    tensors = {f"model.{k}": v for k, v in model_state.items()}
    tensors.update({f"ema.{k}": v for k, v in (ema_state or {}).items()})
    tensors.update({f"autoencoder.{k}": v for k, v in (autoencoder_state or {}).items()})
    for name, state in (extra_ema_states or {}).items():
        tensors.update({f"{_group_of(name)}.{k}": v for k, v in state.items()})
    metadata = {**(extra_metadata or {}), "format": FORMAT, "config": config.to_json(), "step": str(step)}
    if spec is not None:
        metadata["data_spec"] = spec.to_json()
    if record is not None:
        metadata["model_record"] = record.to_json()
    if optimizer_state is not None:
        opt_tensors, opt_rest = _split_optimizer(optimizer_state)
        tensors.update(opt_tensors)
        metadata["optimizer"] = json.dumps(opt_rest)
    if scheduler_state is not None:
        metadata["scheduler"] = json.dumps(scheduler_state)
    if grad_scaler_state is not None:
        metadata["grad_scaler"] = json.dumps(grad_scaler_state)
    path = run_dir / checkpoint_name(step)
    atomic_save_safetensors(path, tensors, metadata)
    atomic_write_bytes(run_dir / LATEST, path.name.encode())
    if keep_last > 0:
        for old in list_checkpoints(run_dir)[:-keep_last]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def list_checkpoints(run_dir: Path) -> list[Path]:
    """Checkpoint files in run_dir, oldest step first."""
    if not run_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run_dir.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def remove_stale_temporaries(run_dir: Path) -> int:
    """Delete temporary files left by a run killed mid-write; returns how many."""
    count = 0
    if run_dir.is_dir():
        for p in run_dir.glob(".*.tmp"):
            p.unlink(missing_ok=True)
            count += 1
    return count


# --- reading --------------------------------------------------------------------------------


def resolve_checkpoint(where: str | Path, run_dir: Path | None = None) -> Path:
    """'latest' (in run_dir), a run folder (its latest) or a file -> the checkpoint file path."""
    spec_path = Path(where)
    if str(where) == LATEST:
        if run_dir is None:
            raise CheckpointError("'latest' needs a run folder; pass the checkpoint file or folder instead")
        if not run_dir.is_dir():
            raise CheckpointError(f"no checkpoint to resume: the run folder {run_dir} does not exist; start without --resume or set run.output_dir")
        spec_path = run_dir
    if spec_path.is_dir() and not (spec_path / LATEST).exists() and meant_as_model_folder(spec_path):
        return spec_path
    if spec_path.is_dir():
        pointer = spec_path / LATEST
        if not pointer.is_file():
            raise CheckpointError(f"no checkpoint in {spec_path} (no '{LATEST}' file, and not a model folder: no {CONFIG_FILE} of an "
                                  "imgflow model); start without --resume, or pass a checkpoint file or a model folder")
        target = spec_path / pointer.read_text().strip()
        if not target.is_file():
            raise CheckpointError(f"{pointer} points at {target.name}, which does not exist; pass an existing ckpt-*.safetensors file")
        return target
    if not spec_path.exists():
        where = spec_path.parent
        hint = "" if where.is_dir() else f" (the folder {where} does not exist either)"
        raise CheckpointError(f"checkpoint {spec_path} does not exist{hint}; pass a ckpt-*.safetensors file or a run folder")
    return spec_path


def load_checkpoint(where: str | Path, run_dir: Path | None = None, device: str | torch.device = "cpu",
                    read_tensors: bool = True) -> Checkpoint:
    """Read a checkpoint file (or a run folder's latest, or 'latest' in run_dir) with one clear error for any problem.

    read_tensors=False reads only the metadata (record, config, spec, step): the weight dicts stay empty.
    """
    path = resolve_checkpoint(where, run_dir)
    if path.is_dir():
        return _from_folder(read_model_folder(path, read_tensors))
    try:
        tensors = load_file(str(path), device=str(device)) if read_tensors else {}
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint (truncated or corrupted? {str(exc).splitlines()[0][:120]}); "
            "use another checkpoint of the run"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a safetensors file but not an imgflow checkpoint (no '{FORMAT}' format tag); "
                              "pass a ckpt-*.safetensors written by train_images.py")
    try:
        config = RunConfig.from_json(metadata["config"], source=f"{path.name} metadata", lenient=True)
    except (KeyError, json.JSONDecodeError, ConfigError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path} has no readable run configuration in its metadata ({exc}); it cannot be rebuilt") from None
    groups: dict[str, dict[str, Tensor]] = {"model": {}, "ema": {}, "optimizer": {}, "autoencoder": {}}
    for key, value in tensors.items():
        prefix, _, rest = key.partition(".")
        groups.setdefault(prefix, {})[rest if prefix != "optimizer" else key] = value
    optimizer = _join_optimizer(groups["optimizer"], json.loads(metadata["optimizer"])) if "optimizer" in metadata and read_tensors else None
    scheduler = json.loads(metadata["scheduler"]) if "scheduler" in metadata else None
    scaler = json.loads(metadata["grad_scaler"]) if "grad_scaler" in metadata else None
    try:  # checkpoints from before data specs were stored describe a fixed torchvision release
        spec = DataSpec.from_json(metadata["data_spec"]) if "data_spec" in metadata else dataset_spec(config.data)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path} has no valid description of its data ({exc}); it cannot be rebuilt") from None
    try:  # checkpoints from before model records (issue 16) are described by their training config
        record = ModelRecord.from_json(metadata["model_record"]) if "model_record" in metadata else record_from_config(config, spec)
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"{path} has no valid model record ({exc}); it cannot be rebuilt") from None
    known = ("format", "config", "step", "optimizer", "scheduler", "data_spec", "grad_scaler", "model_record")
    extra = {k: v for k, v in metadata.items() if k not in known}
    extra_ema = {name.replace("_", "."): weights for name, weights in groups.items() if name.startswith("ema@")}
    return Checkpoint(path, config, int(metadata.get("step", 0)), groups["model"], groups["ema"], optimizer, scheduler, extra,
                      spec, scaler, record, metadata["config"], groups["autoencoder"], extra_ema)


def _from_folder(contents: FolderContents) -> Checkpoint:
    """A model folder as a checkpoint holding its weights alone (as EMA weights, like a shipped file)."""
    try:
        config = RunConfig.from_json(contents.config_json, source=f"{contents.folder.name}/config.json training_config", lenient=True)
    except (json.JSONDecodeError, ConfigError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{contents.folder}/config.json has no readable training_config ({exc}); write the folder again") from None
    return Checkpoint(contents.folder, config, contents.step, {}, contents.weights, spec=contents.spec, record=contents.record,
                      config_json=contents.config_json, autoencoder=contents.codec_weights, extra={"model_folder": "1"})


def load_weights_into(module: torch.nn.Module, weights: dict[str, Tensor], path: Path | str) -> None:
    """load_state_dict(strict) with a one-line error naming what does not match.

    Parameter names a network has since renamed (its `legacy_renames`) are moved to the new ones first.
    """
    from imgflow.nn.conditioning import rename_legacy_keys

    weights = rename_legacy_keys(weights, getattr(module, "legacy_renames", {}))
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    unexpected = [k for k in weights if k not in own]
    mismatched = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or unexpected or mismatched:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            detail.append(f"{len(mismatched)} of another shape (e.g. {k}: {tuple(weights[k].shape)} vs {tuple(own[k].shape)})")
        if Path(path).is_dir():  # a model folder: its weights against its own config.json
            raise CheckpointError(f"{Path(path) / 'model.safetensors'} does not fit the model {Path(path) / CONFIG_FILE} describes "
                                  f"({'; '.join(detail)}); a hand-edited config.json? write the folder again with save_pretrained")
        raise CheckpointError(
            f"checkpoint {path} does not match the model ({'; '.join(detail)}); build the model from the checkpoint's own config "
            "or use the config it was trained with"
        )
    module.load_state_dict(weights)
