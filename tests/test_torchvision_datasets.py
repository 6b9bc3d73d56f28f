"""Every torchvision dataset of the registry loads from small fake files in its release layout."""

import pickle

import numpy as np
import pytest
import torch
import torchvision

from imgflow.config import ConfigError, load_config
from imgflow.data import DATASETS, DatasetNotFoundError, load_dataset
from imgflow.resolved_run import build_model

N_TRAIN, N_TEST = 12, 6


@pytest.fixture
def accept_fake_files(monkeypatch):
    """torchvision checks the md5 of the official CIFAR and SVHN files; these fakes only share their structure."""
    for cls in (torchvision.datasets.CIFAR10, torchvision.datasets.CIFAR100, torchvision.datasets.SVHN):
        monkeypatch.setattr(cls, "_check_integrity", lambda self: True)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *args, **kwargs: True)  # the meta file's md5


def _pixels(n, seed):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)


def write_cifar10(root):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        n = 2 if name != "test_batch" else N_TEST  # 5 batches of 2 training images
        pixels = _pixels(n, i)
        with open(folder / name, "wb") as fh:
            pickle.dump({"data": pixels.reshape(n, -1), "labels": [(i + k) % 10 for k in range(n)]}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]}, fh)
    return _pixels(2, 0)


def write_cifar100(root):
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        with open(folder / split, "wb") as fh:
            pickle.dump({"data": _pixels(n, n).reshape(n, -1), "fine_labels": [(7 * k) % 100 for k in range(n)],
                         "coarse_labels": [k % 20 for k in range(n)]}, fh)
    with open(folder / "meta", "wb") as fh:
        pickle.dump({"fine_label_names": [f"class{k:02d}" for k in range(100)], "coarse_label_names": [f"super{k}" for k in range(20)]}, fh)
    return _pixels(N_TRAIN, N_TRAIN)


def write_svhn(root):
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        pixels = _pixels(n, 100 + n)  # (n, C, H, W); the .mat file stores (H, W, C, n) and labels 1..10, 10 meaning 0
        savemat(root / f"{split}_32x32.mat", {"X": pixels.transpose(2, 3, 1, 0), "y": (np.arange(n) % 10 + 1)[:, None]})
    return _pixels(N_TRAIN, 100 + N_TRAIN)


def test_cifar10_cifar100_and_svhn_load_with_their_shapes_labels_and_class_names(tmp_path, accept_fake_files):
    first_cifar10 = write_cifar10(tmp_path)
    cifar100 = write_cifar100(tmp_path)
    svhn = write_svhn(tmp_path)
    for name, n_train, expect_first, names in (
        ("cifar10", 10, first_cifar10, ("airplane", "automobile")),
        ("cifar100", N_TRAIN, cifar100, ("class00", "class01")),
        ("svhn", N_TRAIN, svhn, ("0", "1")),
    ):
        cfg = load_config(None, {"data.dataset": name, "data.data_root": str(tmp_path), "data.image_size": 32, "data.download": False})
        train = load_dataset(cfg.data, "train")
        test = load_dataset(cfg.data, "test")
        assert train.images.shape == (n_train, 3, 32, 32) and test.images.shape == (N_TEST, 3, 32, 32), name
        assert train.images.dtype == torch.uint8 and train.spec.class_names[:2] == names, name
        assert train.num_classes == DATASETS[name].num_classes
        assert torch.equal(train.images[: len(expect_first)], torch.from_numpy(expect_first)), name  # same pixels, NCHW
        # the model takes the number of classes from the data: a label embedding of K real rows + 1 null row
        model = build_model(load_config(None, {"data.dataset": name, "data.image_size": 32, "model.unet.attention_resolutions": []}),
                            train.spec)
        assert model.class_embed.embedding.num_embeddings == train.num_classes + 1
    svhn_train = load_dataset(load_config(None, {"data.dataset": "svhn", "data.data_root": str(tmp_path), "data.image_size": 32}).data)
    assert svhn_train.labels.tolist()[:11] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]  # the .mat's 10 is the digit 0


def test_missing_files_name_the_folder_and_the_files(tmp_path):
    for name, where, file in (("cifar100", "cifar-100-python", "meta"), ("svhn", str(tmp_path), "train_32x32.mat")):
        cfg = load_config(None, {"data.dataset": name, "data.data_root": str(tmp_path), "data.image_size": 32, "data.download": False})
        with pytest.raises(DatasetNotFoundError) as info:
            load_dataset(cfg.data)
        assert where in str(info.value) and file in str(info.value) and "\n" not in str(info.value)


def test_dataset_facts_are_checked_against_the_registry():
    with pytest.raises(ConfigError, match="data.hflip = true would mirror svhn images"):
        load_config(None, {"data.dataset": "svhn", "data.hflip": True})
    with pytest.raises(ConfigError, match=r"\[data.folder\] is set but data.dataset = 'cifar100'"):
        load_config(None, {"data.dataset": "cifar100", "data.folder.channels": 1})
    assert load_config(None, {"data.dataset": "cifar100", "data.hflip": True}).data.hflip  # objects survive a mirror
