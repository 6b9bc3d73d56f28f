"""Where a model named by a person lives on this machine: a shipped name, a local path, or a Hugging Face Hub repo id.

    model_location("mnist")                  # shipped inside the package (imgflow.pretrained)
    model_location("runs/mnist")             # a run folder, a checkpoint file or a model folder
    model_location("someone/mnist-flow")     # a Hub repo: huggingface_hub.snapshot_download into the user's Hub cache

A repo is fetched with huggingface_hub, so its settings apply as they are: HF_HUB_OFFLINE=1 reads the cache only
(HF_HUB_CACHE / HF_HOME say where it is), a token from `hf auth login` opens private repos. A local path is looked
for first: a folder named like a repo id ("runs/mnist") is never fetched when it exists, and a shipped name wins only
over a folder that holds no model (a data folder called "mnist").
"""

from __future__ import annotations

import re
from pathlib import Path

from imgflow.errors import ConfigError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
#: the files a model folder consists of (imgflow.model_folder); anything else in a repo is not downloaded
FOLDER_PATTERNS = ["*.json", "*.safetensors", "*.md"]


def is_repo_id(reference: str) -> bool:
    """Whether `reference` has the form of a Hub repo id ("owner/name")."""
    return bool(REPO_ID.match(reference)) and ".." not in reference


def snapshot(repo_id: str, revision: str | None = None, allow_patterns: list[str] | None = None, what: str = "model") -> Path:
    """The local folder of a Hub repo's snapshot (downloaded into the Hub cache if it is not there and the network is
    allowed), or one ConfigError saying why not and what to do."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:  # pragma: no cover - accelerate depends on huggingface_hub
        raise ConfigError(f"{repo_id!r} looks like a Hub repo id, and huggingface_hub is not installed: pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns or FOLDER_PATTERNS))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        raise ConfigError(f"{repo_id!r} is not a local path, and the Hub repo of that name is not in the Hub cache (offline, or "
                          f"no network): download it once with network (hf download {repo_id}), or pass a local {what} folder") from None
    except GatedRepoError:
        raise ConfigError(f"the Hub repo {repo_id!r} is gated: accept its terms on the Hub and log in (hf auth login)") from None
    except RevisionNotFoundError:
        raise ConfigError(f"the Hub repo {repo_id!r} has no revision {revision!r}; leave revision out or name a branch, tag or commit") from None
    except RepositoryNotFoundError:
        raise ConfigError(f"{repo_id!r} is neither a local path nor a Hub repo (none of that name, or private: hf auth login); "
                          f"check the spelling, or pass a local {what} folder") from None
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ConfigError(f"could not fetch the Hub repo {repo_id!r} ({str(exc).splitlines()[0][:120]}); retry, or set "
                          "HF_HUB_OFFLINE=1 to use the Hub cache only") from None


def model_location(reference: str | Path, revision: str | None = None, key: str = "model") -> Path:
    """The local file or folder of a model named by a shipped name, a path, or a Hub repo id (module docstring).

    key: how the caller's user named the value (e.g. "flow.mean_flow_distillation.teacher"), for the error message.
    """
    from imgflow.pretrained import PRETRAINED, pretrained_path

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
    if is_repo_id(text) and not Path(text.split("/")[0]).is_dir():  # "runs/mnst" in a folder with runs/ is a typo, not a repo
        return snapshot(text, revision)
    shipped = ", ".join(n for n, m in PRETRAINED.items() if m.kind == "sampler")
    hint = f" (the folder {path.parent} does not exist either)" if path.parent != Path(".") and not path.parent.exists() else ""
    raise ConfigError(f"{key} {text!r} does not exist{hint}: name a run folder, a checkpoint file, a model folder, a shipped "
                      f"model ({shipped}) or a Hub repo id (owner/name)")


__all__ = ["FOLDER_PATTERNS", "REPO_ID", "is_repo_id", "model_location", "snapshot"]
