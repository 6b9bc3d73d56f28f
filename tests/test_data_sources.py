"""Data sources behind one interface, and arrays of any dtype behind ImageData (float latents as well as uint8 pixels)."""

import dataclasses

import numpy as np
import pytest
import torch

from imgflow.config import ConfigError, load_config
from imgflow.data import DATASETS, ImageData, data_identity, dataset_spec
from imgflow.training.batches import BatchSchedule
from imgflow.training.trainer import Trainer
from tests.image_helpers import tiny_config


def test_every_source_has_the_interface_and_no_caller_branches_on_its_kind():
    for name, entry in DATASETS.items():
        assert dataclasses.is_dataclass(entry.options), name
        for method in ("validate", "spec", "identity", "load_split"):
            assert callable(getattr(entry, method)), (name, method)
        assert "data_root" in entry.location_keys or "folder.path" in entry.location_keys
    mnist = load_config(None, {"data.image_size": 32})
    assert dataset_spec(mnist.data).shape == (1, 32, 32) and data_identity(mnist.data) == {
        "dataset": "mnist", "image_size": "32", "resize": "False"}
    with pytest.raises(ValueError, match="known only once it is loaded"):
        dataset_spec(load_config(None, {"data.dataset": "folder", "data.folder.path": "x"}).data)
    with pytest.raises(ConfigError, match="needs data.folder.path"):
        load_config(None, {"data.dataset": "folder"})
    with pytest.raises(ConfigError, match="data.folder.workers must be >= 1"):
        load_config(None, {"data.dataset": "folder", "data.folder.path": "x", "data.folder.workers": 0})


def latents(n=48, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, 4, 4, generator=g) * 0.5 + torch.arange(n).remainder(10).float()[:, None, None, None] / 10


def test_float_arrays_batch_as_stored_and_memory_mapped_ones_give_the_same_batches(tmp_path):
    values, labels = latents(), torch.arange(48) % 10
    resident = ImageData(values, labels)
    x, y = resident.batch(torch.tensor([3, 0, 7]))
    assert x.dtype == torch.float32 and torch.equal(x, values[[3, 0, 7]]) and torch.equal(y, labels[[3, 0, 7]])
    path = tmp_path / "latents.f16"
    stored = np.memmap(path, dtype=np.float16, mode="w+", shape=tuple(values.shape))
    stored[:] = values.numpy()
    stored.flush()
    mapped = ImageData(torch.from_numpy(np.memmap(path, dtype=np.float16, mode="c", shape=tuple(values.shape))), labels, resident=False)
    schedule = BatchSchedule(48, 8, seed=5)
    for step in (0, 5, 6, 13):  # across an epoch boundary (6 batches an epoch)
        idx = schedule.indices(step)
        a, _ = mapped.batch(idx)
        b, _ = ImageData(values.half(), labels).batch(idx)
        assert a.dtype == torch.float32 and torch.equal(a, b)  # float16 storage, the same rows bit for bit
    with pytest.raises(ValueError, match="uint8 or floating"):
        ImageData(torch.zeros(4, 1, 2, 2, dtype=torch.int32), None)


def test_a_model_trains_on_float_data_exactly_like_on_any_other(tmp_path):
    data = ImageData(latents(), torch.arange(48) % 10)
    cfg = tiny_config(tmp_path / "run", **{"data.image_size": 4, "model.unet.channel_mults": [1, 2], "model.unet.attention_resolutions": [],
                                           "train.steps": 4})
    a = Trainer(cfg, data=data)
    a.run(progress=False)
    cfg_b = tiny_config(tmp_path / "run_b", **{"data.image_size": 4, "model.unet.channel_mults": [1, 2],
                                               "model.unet.attention_resolutions": [], "train.steps": 4})
    b = Trainer(cfg_b, data=data)
    b.run(progress=False)
    assert a.spec.channels == 4
    for (name, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(p, q), name  # batches are a pure function of (seed, step) for float data too
    assert any(not torch.equal(p, q) for p, q in zip(a.model.state_dict().values(), Trainer(
        tiny_config(tmp_path / "run_c", **{"data.image_size": 4, "model.unet.channel_mults": [1, 2],
                                          "model.unet.attention_resolutions": []}), data=data).model.state_dict().values()))
