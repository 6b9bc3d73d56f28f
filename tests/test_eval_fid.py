"""Fréchet distance against closed forms, reference-statistics cache, Inception messages."""

import math

import pytest
import torch

from imgflow.config import load_config
from imgflow.evaluation import fid as fid_mod
from imgflow.evaluation.classifier import ClassifierArch, ImageClassifier, save_classifier
from imgflow.evaluation.fid import (
    FeatureStats,
    InceptionUnavailable,
    feature_statistics,
    frechet_distance,
    inception_features,
    inception_status,
    reference_statistics,
    trace_sqrt_product,
)
from tests.image_helpers import write_idx_mnist


def random_spd(d, g, lo=0.5, hi=2.0):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=torch.float64))
    return q @ torch.diag(torch.linspace(lo, hi, d, dtype=torch.float64)) @ q.T


def test_identical_sets_have_zero_distance_even_when_rank_deficient():
    g = torch.Generator().manual_seed(0)
    full = torch.randn(2000, 16, generator=g) * 3 + 1
    s = feature_statistics(full)
    assert frechet_distance(s, s) < 1e-9 * torch.trace(s.cov).item()
    # N < D and dead (constant) features, as ReLU features can have: a singular covariance
    low = torch.relu(torch.randn(10, 32, generator=g))
    low[:, :5] = 0
    s2 = feature_statistics(low)
    assert frechet_distance(s2, s2) < 1e-6 * torch.trace(s2.cov).item()


def test_trace_sqrt_matches_the_2x2_closed_form_for_non_commuting_covariances():
    # for 2x2 SPD A, B: tr sqrt(A B) = sqrt(tr(AB) + 2 sqrt(det A det B)) (Cayley-Hamilton)
    g = torch.Generator().manual_seed(1)
    for _ in range(5):
        a, b = random_spd(2, g, 0.1, 3.0), random_spd(2, g, 0.1, 3.0)
        assert not torch.allclose(a @ b, b @ a)
        expected = math.sqrt(torch.trace(a @ b).item() + 2 * math.sqrt(torch.det(a).item() * torch.det(b).item()))
        assert trace_sqrt_product(a, b).item() == pytest.approx(expected, rel=1e-10)
        assert trace_sqrt_product(b, a).item() == pytest.approx(expected, rel=1e-10)


def test_exact_parameters_give_the_closed_form():
    g = torch.Generator().manual_seed(2)
    mu1, mu2 = torch.randn(64, generator=g, dtype=torch.float64), torch.randn(64, generator=g, dtype=torch.float64)
    s1, s2 = torch.rand(64, generator=g, dtype=torch.float64) + 0.5, torch.rand(64, generator=g, dtype=torch.float64) + 0.5
    # diagonal covariances: FD = |mu1 - mu2|^2 + sum (s1 - s2)^2
    expected = (mu1 - mu2).pow(2).sum() + (s1 - s2).pow(2).sum()
    got = frechet_distance((mu1, torch.diag(s1**2)), (mu2, torch.diag(s2**2)))
    assert got == pytest.approx(expected.item(), rel=1e-10)
    # the same covariance: FD = |mu1 - mu2|^2 whatever the covariance
    cov = random_spd(64, g)
    assert frechet_distance((mu1, cov), (mu2, cov)) == pytest.approx((mu1 - mu2).pow(2).sum().item(), rel=1e-8)
    # symmetric
    c2 = random_spd(64, g, 0.2, 5.0)
    assert frechet_distance((mu1, cov), (mu2, c2)) == pytest.approx(frechet_distance((mu2, c2), (mu1, cov)), rel=1e-9)


def test_shifted_gaussian_samples_match_the_closed_form_within_sampling_error():
    g = torch.Generator().manual_seed(3)
    d, n = 8, 20000
    cov = random_spd(d, g)  # eigenvalues 0.5..2, trace 10
    chol = torch.linalg.cholesky(cov)
    shift = torch.zeros(d, dtype=torch.float64)
    shift[0] = 2.0  # |mu1 - mu2|^2 = 4
    x1 = torch.randn(n, d, generator=g, dtype=torch.float64) @ chol.T
    x2 = torch.randn(n, d, generator=g, dtype=torch.float64) @ chol.T + shift
    got = frechet_distance(feature_statistics(x1), feature_statistics(x2))
    # closed form 4; the estimate's spread is dominated by the cross term 2 shift.(mean errors), whose
    # standard deviation is 2 sqrt(2 shift^T cov shift / n) <= 2 sqrt(2 * 4 * 2 / 20000) = 0.057,
    # plus a positive bias of about 2 tr(cov) / n + O(d^2 / n) = 0.004: 0.25 is over 4 sigma
    assert got == pytest.approx(4.0, abs=0.25)
    # two samples of one Gaussian: the distance is only that bias, O(d^2 / n)
    x3 = torch.randn(n, d, generator=g, dtype=torch.float64) @ chol.T
    assert frechet_distance(feature_statistics(x1), feature_statistics(x3)) < 0.02

    # different, non-commuting covariances in 2-D against the 2x2 closed form
    a, b = random_spd(2, g, 0.3, 2.0), random_spd(2, g, 0.3, 2.0)
    mu_b = torch.tensor([1.0, -1.0], dtype=torch.float64)
    exact = 2.0 + torch.trace(a + b).item() - 2 * math.sqrt(torch.trace(a @ b).item() + 2 * math.sqrt(torch.det(a).item() * torch.det(b).item()))
    ya = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(a).T
    yb = torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.linalg.cholesky(b).T + mu_b
    # same argument: the mean cross term has sd 2 sqrt(2 * 2 * 2 / n) = 0.04; covariance errors ~ 2 / sqrt(n) = 0.014
    assert frechet_distance(feature_statistics(ya), feature_statistics(yb)) == pytest.approx(exact, abs=0.2)


def test_statistics_are_float64_and_unbiased():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0], [4.0, 8.0]])
    s = feature_statistics(x)
    assert s.mean.dtype == torch.float64 and s.n == 3
    assert torch.allclose(s.cov, torch.cov(x.double().T))
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(x[:1])
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(s, FeatureStats(torch.zeros(3), torch.eye(3), 5))


# --- reference statistics cache ---------------------------------------------------------------------


def _tiny_classifier(seed):
    torch.manual_seed(seed)
    return ImageClassifier(ClassifierArch(widths=(4, 8, 8), feature_dim=16, pool=2)).eval()


def test_reference_statistics_are_cached_once_and_invalidated_by_a_new_classifier(tmp_path, monkeypatch):
    write_idx_mnist(tmp_path / "data", n_train=16, n_test=40, size=8)
    clf_path = tmp_path / "clf.safetensors"
    clf = _tiny_classifier(0)
    save_classifier(clf_path, clf, {"dataset": "mnist", "image_size": "8"}, 0.5)
    calls = []
    original = fid_mod.compute_feature_statistics

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(fid_mod, "compute_feature_statistics", counting)
    data = load_config(None, {"data.data_root": str(tmp_path / "data"), "data.image_size": 8, "data.download": False}).data
    kw = dict(data=data, split="test", cache_dir=tmp_path / "cache")

    first = reference_statistics(clf_path, clf.features, **kw)
    assert first.computed and first.cache_written and first.cache_path.is_file() and len(calls) == 1
    assert first.stats.n == 40 and first.stats.mean.shape == (16,)
    mtime = first.cache_path.stat().st_mtime_ns

    second = reference_statistics(clf_path, clf.features, **kw)
    assert not second.computed and len(calls) == 1  # read, not recomputed
    assert second.cache_path == first.cache_path and second.cache_path.stat().st_mtime_ns == mtime
    assert torch.equal(second.stats.mean, first.stats.mean) and torch.equal(second.stats.cov, first.stats.cov)

    # another split or image size is another key
    train = reference_statistics(clf_path, clf.features, **{**kw, "split": "train"})
    assert train.computed and train.stats.n == 16 and len(calls) == 2

    # retrain (here: new weights) -> the file hash changes -> recomputed, and the stale file removed
    clf2 = _tiny_classifier(1)
    save_classifier(clf_path, clf2, {"dataset": "mnist", "image_size": "8"}, 0.5)
    third = reference_statistics(clf_path, clf2.features, **kw)
    assert third.computed and len(calls) == 3 and third.cache_path != first.cache_path
    assert not first.cache_path.exists() and third.cache_path.is_file()
    assert not torch.allclose(third.stats.mean, first.stats.mean)

    # a corrupted cache file is recomputed rather than trusted
    third.cache_path.write_bytes(b"garbage")
    again = reference_statistics(clf_path, clf2.features, **kw)
    assert again.computed and torch.allclose(again.stats.mean, third.stats.mean)


def test_default_cache_lives_next_to_the_classifier(tmp_path):
    write_idx_mnist(tmp_path / "data", n_train=16, n_test=20, size=8)
    clf = _tiny_classifier(0)
    save_classifier(tmp_path / "c.safetensors", clf, {"dataset": "mnist", "image_size": "8"}, 0.5)
    data = load_config(None, {"data.data_root": str(tmp_path / "data"), "data.image_size": 8, "data.download": False}).data
    ref = reference_statistics(tmp_path / "c.safetensors", clf.features, data)
    assert ref.cache_path.parent == tmp_path and ref.cache_path.name.startswith("c.mnist-8-test.")


# --- Inception FID without its package / weights -----------------------------------------------------


def test_inception_without_package_is_one_clear_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_fidelity(name, *args, **kwargs):
        if name.startswith("torch_fidelity"):
            raise ImportError("no torch_fidelity")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fidelity)
    msg = inception_status()
    assert msg is not None and "\n" not in msg and "pip install torch-fidelity" in msg
    with pytest.raises(InceptionUnavailable) as info:
        inception_features(torch.zeros(2, 1, 8, 8))
    assert str(info.value) == msg


def test_inception_without_weights_names_the_file_and_folder(monkeypatch, tmp_path):
    import sys
    import types

    fake = types.ModuleType("torch_fidelity")
    sub = types.ModuleType("torch_fidelity.feature_extractor_inceptionv3")
    sub.FeatureExtractorInceptionV3 = object
    monkeypatch.setitem(sys.modules, "torch_fidelity", fake)
    monkeypatch.setitem(sys.modules, "torch_fidelity.feature_extractor_inceptionv3", sub)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    monkeypatch.delenv("IMGFLOW_INCEPTION_WEIGHTS", raising=False)
    msg = inception_status()
    assert msg is not None and "\n" not in msg
    assert "weights-inception-2015-12-05-6726825d.pth" in msg and str(tmp_path / "hub") in msg
    missing = inception_status(tmp_path / "nope.pth")
    assert missing is not None and "nope.pth does not exist" in missing
    # with the file in the hub folder it is found
    folder = tmp_path / "hub" / "hub" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "weights-inception-2015-12-05-6726825d.pth").write_bytes(b"x")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub" / "hub"))
    assert inception_status() is None
