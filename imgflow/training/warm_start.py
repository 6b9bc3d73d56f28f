"""Starting a run from another run's weights (`train.init_from`): a flow map from a trained velocity model.

A MeanFlow model u(x, t, r) and a flow-matching model v(x, t) of the same backbone and options share
every tensor except the second time's embedding, whose last layer starts at zero: loaded into the flow
map, the velocity model's weights make u(x, t, r) = v(x, t) for every r, the instantaneous velocity the
MeanFlow identity starts from. Only weights travel (the EMA's, or the trained ones where the run kept
none); optimiser, step and schedule start fresh. Anything else that differs (backbone, options such as
the time scale, image shape, classes, latents) makes the weights mean something else, so it is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from imgflow.checkpoint import CheckpointError, load_checkpoint
from imgflow.config import ConfigError
from imgflow.model_record import ModelRecord

#: the parameters a flow map has and a velocity model lacks (they start as the backbone builds them)
SECOND_TIME_KEYS = ("second_time_embed.",)


def _differences(source: ModelRecord, target: ModelRecord) -> list[str]:
    out = []
    if source.arch != target.arch:
        out.append(f"model.arch {source.arch!r} vs {target.arch!r}")
    old, new = json.loads(json.dumps(source.options)), json.loads(json.dumps(target.options))  # tuples and lists alike
    for key in sorted(set(old) | set(new)):
        if key != "second_time" and old.get(key) != new.get(key):
            out.append(f"model.{target.arch}.{key} {old.get(key)!r} vs {new.get(key)!r}")
    if (source.spec.shape, source.spec.class_names) != (target.spec.shape, target.spec.class_names):
        out.append(f"data of shape {source.spec.shape} with {source.spec.num_classes} classes vs {target.spec.shape} with "
                   f"{target.spec.num_classes}")
    if source.conditional != target.conditional:
        out.append(f"model.class_conditional {source.conditional} vs {target.conditional}")
    if bool(source.latent) != bool(target.latent) or (source.latent and source.latent.get("digest") != target.latent.get("digest")):
        out.append("the autoencoder whose latents it models")
    if source.schedule != target.schedule or source.prediction != target.prediction:
        out.append(f"flow.schedule / prediction {source.schedule}/{source.prediction} vs {target.schedule}/{target.prediction}")
    return out


def warm_start(model: nn.Module, record: ModelRecord, where: str | Path, key: str = "train.init_from") -> Path:
    """Load the weights of the checkpoint (file or run folder) `where` into `model` (built from `record`); its path.

    ConfigError, naming the difference, when the checkpoint's model is not `record`'s (up to the second time).
    key: the config key that asked for the warm start, for the messages.
    """
    name = f"{key} = {where}" if key == "train.init_from" else f"{key} (the teacher {where})"
    hint = "" if key == "train.init_from" else f", or set {key} = false to train this student from its own initialisation"
    try:
        ckpt = load_checkpoint(where)
    except CheckpointError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    source = ckpt.record
    if source.flow_map and not record.flow_map:
        raise ConfigError(f"{name}: that checkpoint is a flow map and this run trains a velocity model; "
                          "start it from a flow-matching checkpoint, or from scratch")
    differences = _differences(source, record)
    if differences:
        raise ConfigError(f"{name}: its model differs from this run's in {'; '.join(differences)}; "
                          f"warm starts need the same backbone and options (only the second time may be new){hint}")
    weights = ckpt.weights("ema")
    own = model.state_dict()
    new = [k for k in own if k not in weights]
    if any(not any(part in k for part in SECOND_TIME_KEYS) for k in new) or any(k not in own for k in weights):
        odd = next((k for k in new if not any(part in k for part in SECOND_TIME_KEYS)), None) or next(k for k in weights if k not in own)
        raise ConfigError(f"{name}: its weights do not fit this model (e.g. {odd}); start from a checkpoint "
                          "of the same backbone")
    model.load_state_dict({**own, **{k: v.to(own[k].device, own[k].dtype) for k, v in weights.items()}})
    return ckpt.path
