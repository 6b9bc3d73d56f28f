"""Config files of earlier layouts, read as today's: pure functions from {'section': {'key': value}} tables to tables.

Two moves happened, and files of either era still load (one note line names what moved):

- issue 16 (`migrate_flat`): the flat [model], [flow] and [data] sections split into variant sections:
  U-Net keys went to [model.unet] (or, for the lab U-Net, its own keys), flow.mean_flow_X to [flow.mean_flow] X,
  the folder keys to [data.folder];
- issue 25 (`migrate_variant_keys`): keys that only one variant reads moved into its section: flow.time_sampling
  and flow.logit_normal_mean/std to [flow.flow_matching], sample.rtol/atol to [sample.adaptive], sample.sde_epsilon
  to [sample.euler_maruyama]. Under another variant such a key did nothing: it is returned as stranded, and the
  caller drops it (a config imgflow wrote, where it had no effect) or refuses it (a user's file).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Migrated:
    tables: dict[str, Any]
    notes: list[str]
    #: ('section.key', the variant that reads it) of moved keys whose variant is not the selected one
    stranded: list[tuple[str, str]] = field(default_factory=list)


#: keys of the flat [model] section before issue 16 that belonged to the U-Net (now [model.unet])
_FLAT_UNET = ("base_channels", "channel_mults", "num_res_blocks", "attention_resolutions", "mid_attention", "num_heads",
              "head_channels", "scale_shift", "dropout", "time_embedding", "time_scale", "second_time")
#: the folder-only keys of the flat [data] section (now [data.folder])
_FLAT_FOLDER = ("path", "channels", "fit", "holdout_fraction", "skip_bad_images", "cache_dir", "workers")
#: placeholders of the flat layout that meant "not set" (now: leave the key out)
_PLACEHOLDERS = {("model", "head_channels"): 0, ("model", "second_time"): "none", ("data", "channels"): 0,
                 ("data", "cache_dir"): "", ("data", "workers"): 0, ("data", "path"): ""}


def migrate_flat(raw: dict[str, Any], selected: dict[str, str]) -> Migrated:
    """Map keys of the flat layout (before issue 16) to today's sections; `selected`: the section's selector values.

    [model] U-Net keys -> [model.unet] (with arch = lab_unet: base_channels x channel_mults -> channels,
    num_res_blocks -> num_residual_layers, embed_dim -> embed_dim); [flow] mean_flow_X -> [flow.mean_flow] X;
    the seven folder keys of [data] -> [data.folder]; placeholders (head_channels = 0, second_time = "none",
    channels = 0, cache_dir = "", workers = 0, path = "") are dropped, since leaving the key out says the same.
    """
    tables = {s: dict(v) if isinstance(v, dict) else v for s, v in raw.items()}
    notes: list[str] = []

    def move(section: str, key: str, dest: tuple[str, ...], value: Any) -> None:
        tables[section].pop(key, None)
        if _PLACEHOLDERS.get((section, key), object()) == value:
            notes.append(f"{section}.{key} = {value!r} -> left out (unset)")
            return
        node = tables
        for part in dest[:-1]:
            node = node.setdefault(part, {})
        node[dest[-1]] = value
        notes.append(f"{section}.{key} -> {'.'.join(dest)}")

    model = tables.get("model")
    if isinstance(model, dict):
        arch = selected.get("model", "unet")
        flat = {k: model[k] for k in (*_FLAT_UNET, "embed_dim") if k in model and not isinstance(model[k], dict)}
        if arch == "lab_unet" and flat:
            for key in flat:
                model.pop(key)
            lab = tables["model"].setdefault("lab_unet", {})
            if "base_channels" in flat or "channel_mults" in flat:
                lab["channels"] = [flat.get("base_channels", 32) * m for m in flat.get("channel_mults", (1, 2, 2))]
                notes.append("model.base_channels x model.channel_mults -> model.lab_unet.channels")
            if "num_res_blocks" in flat:
                lab["num_residual_layers"] = flat["num_res_blocks"]
                notes.append("model.num_res_blocks -> model.lab_unet.num_residual_layers")
            if "embed_dim" in flat:
                lab["embed_dim"] = flat["embed_dim"]
                notes.append("model.embed_dim -> model.lab_unet.embed_dim")
        else:
            for key, value in flat.items():
                if key == "embed_dim":
                    model.pop(key)
                    notes.append("model.embed_dim (lab_unet only) dropped")
                else:
                    move("model", key, ("model", arch if arch != "lab_unet" else "unet", key), value)
    flow = tables.get("flow")
    if isinstance(flow, dict):
        for key in [k for k in flow if k.startswith("mean_flow_") and not isinstance(flow[k], dict)]:
            move("flow", key, ("flow", "mean_flow", key[len("mean_flow_"):]), flow[key])
    data = tables.get("data")
    if isinstance(data, dict):
        for key in [k for k in _FLAT_FOLDER if k in data and not isinstance(data[k], dict)]:
            move("data", key, ("data", "folder", key), data[key])
    return Migrated(tables, notes)


#: keys that moved into one variant's section in issue 25: (section, key) -> the variant that reads it
MOVED_TO_VARIANT = {
    ("flow", "time_sampling"): "flow_matching",
    ("flow", "logit_normal_mean"): "flow_matching",
    ("flow", "logit_normal_std"): "flow_matching",
    ("sample", "sde_epsilon"): "euler_maruyama",
    ("sample", "rtol"): "adaptive",
    ("sample", "atol"): "adaptive",
}


def migrate_variant_keys(raw: dict[str, Any], selected: dict[str, str]) -> Migrated:
    """Move the keys of `MOVED_TO_VARIANT` into their variant's table when it is the selected one (`selected`:
    {'flow': objective, 'sample': solver, ...}); the others come back as `stranded`, removed from the tables."""
    tables = {s: dict(v) if isinstance(v, dict) else v for s, v in raw.items()}
    notes: list[str] = []
    stranded: list[tuple[str, str]] = []
    for (section, key), variant in MOVED_TO_VARIANT.items():
        table = tables.get(section)
        if not isinstance(table, dict) or key not in table or isinstance(table[key], dict):
            continue
        value = table.pop(key)
        if selected.get(section) == variant:
            own = table.setdefault(variant, {})
            if isinstance(own, dict):
                own.setdefault(key, value)
            notes.append(f"{section}.{key} -> {section}.{variant}.{key}")
        else:
            stranded.append((f"{section}.{key}", variant))
    return Migrated(tables, notes, stranded)


__all__ = ["MOVED_TO_VARIANT", "Migrated", "migrate_flat", "migrate_variant_keys"]
