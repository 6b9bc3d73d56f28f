"""Hugging Face Hub repos as local folders: `snapshot("owner/name")` is huggingface_hub.snapshot_download.

A repo is fetched with huggingface_hub, so its settings apply as they are: HF_HUB_OFFLINE=1 reads the cache only
(HF_HUB_CACHE / HF_HOME say where it is), a token from `hf auth login` opens private repos. Which names are repos and
which are local paths or shipped models is decided by the callers (imgflow.pretrained.model_location for models,
imgflow.latents for autoencoders): a path that exists is never fetched.
"""

from __future__ import annotations

import re
from pathlib import Path

from imgflow.errors import ConfigError

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")
#: the files a model folder consists of (imgflow.model_folder); anything else in a repo is not downloaded
FOLDER_PATTERNS = ["*.json", "*.safetensors", "*.md"]


def is_repo_id(reference: str) -> bool:
    """Whether `reference` has the form of a Hub repo id ("owner/name") and names nothing local: neither an existing path
    nor a name under an existing local folder ("runs/mnst" beside a runs/ folder is a typo, not a repo)."""
    return (bool(REPO_ID.match(reference)) and ".." not in reference and not Path(reference).exists()
            and not Path(reference.split("/")[0]).is_dir())


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


__all__ = ["FOLDER_PATTERNS", "REPO_ID", "is_repo_id", "snapshot"]
