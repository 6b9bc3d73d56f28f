"""Test-session settings shared by every test file."""

import os
import tempfile

import pytest
import torch

# no test reaches the Hugging Face Hub or reads the user's Hub cache: huggingface_hub reads these once, when imported
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="imgflow-tests-hf-")
os.environ.pop("HF_HUB_CACHE", None)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Every test workload is tiny: one thread is faster than two, and on a busy 2-core machine
    two spinning OpenMP threads can make a step 10-100x slower."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(autouse=True, scope="session")
def own_cache_folder(tmp_path_factory):
    """The caches (folders, latents, FID statistics, endpoint pairs) of this test process live in its own temporary
    folder: the user's ~/.cache/imgflow is never read or written, and the workers of `pytest -n 2` (pytest-xdist)
    never build the same cache folder at once. Subprocesses the tests start inherit it."""
    previous = os.environ.get("IMGFLOW_CACHE")
    os.environ["IMGFLOW_CACHE"] = str(tmp_path_factory.mktemp("imgflow-cache"))
    yield
    if previous is None:
        os.environ.pop("IMGFLOW_CACHE", None)
    else:
        os.environ["IMGFLOW_CACHE"] = previous
