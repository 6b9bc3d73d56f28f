"""scripts/evaluate.py, scripts/nfe_sweep.py and scripts/train_classifier.py on a tiny trained model and tiny IDX data."""

import json
import math
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from imgflow.data import load_image_data
from imgflow.evaluation.classifier import ClassifierArch, load_classifier, save_classifier, train_classifier
from imgflow.training.trainer import train
from tests.image_helpers import blob_images, tiny_config, write_idx_mnist

REPO = Path(__file__).resolve().parents[1]



@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A flow model trained for a few steps on 8x8 blobs, IDX files of the same kind, and a classifier for them."""
    root = tmp_path_factory.mktemp("eval")
    write_idx_mnist(root / "data", n_train=200, n_test=60, size=8)
    cfg = tiny_config(root / "run", **{"data.data_root": str(root / "data"), "train.steps": 8, "train.checkpoint_every": 8})
    train(cfg, data=blob_images(200), progress=False)
    tr = load_image_data("mnist", root / "data", train=True, download=False)
    te = load_image_data("mnist", root / "data", train=False, download=False)
    res = train_classifier(tr, te, ClassifierArch(widths=(8, 16, 16), feature_dim=16, pool=2), epochs=4, batch_size=32, lr=1e-2)
    save_classifier(root / "clf.safetensors", res.model, "mnist", 8, res.test_accuracy)
    return {"root": root, "run": root / "run", "clf": root / "clf.safetensors", "test_accuracy": res.test_accuracy}


def run_script(script, argv, monkeypatch, capsys):
    """Run a script's __main__ in this process (its run_cli exits) and return (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", [str(REPO / "scripts" / script), *map(str, argv)])
    with pytest.raises(SystemExit) as info:
        runpy.run_path(str(REPO / "scripts" / script), run_name="__main__")
    out = capsys.readouterr()
    return info.value.code, out.out, out.err


def test_tiny_classifier_learns_the_blobs_and_round_trips(setup):
    # 10 well-separated patterns with pixel noise: 4 epochs of 200 images are plenty
    assert setup["test_accuracy"] > 0.9
    model, info = load_classifier(setup["clf"])
    assert info.dataset == "mnist" and info.image_size == 8 and info.test_accuracy == pytest.approx(setup["test_accuracy"])
    assert model.features(torch.zeros(3, 1, 8, 8)).shape == (3, 16) and model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_evaluate_script_prints_numbers_and_writes_json(setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "eval.json"
    args = [str(setup["run"]), "--classifier", str(setup["clf"]), "--num", "40", "--steps", "2", "--guidance", "1,3",
            "--bpd-images", "12", "--bpd-solver", "rk4", "--bpd-steps", "2", "--json", str(out), "--cache-dir", str(tmp_path / "cache")]
    # once as a real command line ...
    proc = subprocess.run([sys.executable, str(REPO / "scripts/evaluate.py"), *args, "--quiet"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "FID(clf)" in proc.stdout and "bits/dim" in proc.stdout and f"wrote {out}" in proc.stdout
    report = json.loads(out.read_text())
    assert [r["guidance_scale"] for r in report["results"]] == [1.0, 3.0]
    for row in report["results"]:
        assert math.isfinite(row["fid"]) and row["fid"] >= 0
        assert 0.0 <= row["class_accuracy"] <= 1.0 and len(row["per_class_accuracy"]) == 10
        assert row["num_samples"] == 40 and row["nfe"] == 2 and row["nonfinite_samples"] == 0
    assert report["reference"]["num_images"] == 60 and report["reference"]["cached"] is False
    assert math.isfinite(report["fid_real_train_images"]) and report["fid_real_train_images"] >= 0
    nll = report["nll"]
    # a barely trained model: the code length is finite and (dequantised 8-bit data) positive
    assert nll["num_images"] == 12 and len(nll["per_image"]) == 12 and 0 < nll["bits_per_dim"] < 50
    assert nll["nfe"] == 8 and nll["settings"]["solver"] == "rk4" and nll["settings"]["grid_power"] == 3.0  # rk4, 2 steps
    # the printed table carries the JSON's numbers
    first = report["results"][0]
    assert f"{first['fid']:9.3f}" in proc.stdout and f"{nll['bits_per_dim']:.4f}" in proc.stdout

    # ... then again in this process: the reference statistics come from the cache, the numbers repeat
    code, stdout, stderr = run_script("evaluate.py", args, monkeypatch, capsys)
    assert code == 0 and "(cached)" in stdout and "cached" in stderr
    again = json.loads(out.read_text())
    assert again["reference"]["cached"] is True
    assert again["results"][0]["fid"] == pytest.approx(first["fid"], rel=1e-6)  # same seeds, same samples
    assert again["nll"]["bits_per_dim"] == pytest.approx(nll["bits_per_dim"], rel=1e-5)


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--classifier", "{tmp}/missing.safetensors"], "classifier file {tmp}/missing.safetensors does not exist; train one with"),
        (["--classifier", "{clf}", "--inception"], "Inception FID needs torch-fidelity, which is not installed"),
        (["--classifier", "{clf}", "--json", "{tmp}/nodir/out.json"], "--json folder {tmp}/nodir does not exist"),
        (["--classifier", "{clf}", "--data-root", "{tmp}/nodata"], "mnist is not in {tmp}/nodata/MNIST/raw"),
        (["--classifier", "{clf}", "--guidance", "1,x"], "--guidance must be comma-separated numbers"),
        (["--classifier", "{wrong}"], "was trained for dataset fashion_mnist (the model's is mnist), image size 28"),
        (["--classifier", "{clf}", "--bpd-images", "many"], "argument --bpd-images: invalid int value: 'many'"),
        (["--classifier", "{clf}", "--num", "1"], "--num must be >= 2"),
    ],
    ids=["missing-classifier", "no-inception", "unwritable-json", "missing-dataset", "bad-guidance", "wrong-classifier",
         "bad-number", "too-few-samples"],
)
def test_evaluate_bad_input_is_one_line(setup, tmp_path, monkeypatch, capsys, extra, message):
    if "--inception" in extra:
        try:
            import torch_fidelity  # noqa: F401

            pytest.skip("torch-fidelity is installed here")
        except ImportError:
            pass
    wrong = tmp_path / "wrong.safetensors"
    if "{wrong}" in extra:
        model, _ = load_classifier(setup["clf"])
        save_classifier(wrong, model, "fashion_mnist", 28, 0.9)
    fill = {"tmp": tmp_path, "clf": setup["clf"], "wrong": wrong}
    argv = [setup["run"], "--num", "4", "--bpd-images", "0", "--quiet", *[a.format(**fill) for a in extra]]
    code, out, err = run_script("evaluate.py", argv, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(**fill) in lines[0], lines[0]
    assert not (tmp_path / "nodir").exists()


def test_nfe_sweep_writes_table_json_and_plot(setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sweep"
    argv = [setup["run"], "--classifier", setup["clf"], "--out-dir", out, "--num", "20", "--solvers", "euler,heun,adaptive,euler_maruyama",
            "--nfe", "1,2", "--tolerances", "1e-2", "--time-grids", "uniform,late", "--cache-dir", tmp_path / "cache"]
    code, stdout, _ = run_script("nfe_sweep.py", argv, monkeypatch, capsys)
    assert code == 0
    report = json.loads((out / "nfe_sweep.json").read_text())
    rows = report["rows"]
    # euler: NFE 1 and 2 on two grids; heun: only NFE 2 (2 per step) on two grids; adaptive: one tolerance; EM: 1, 2 on two grids
    assert len(rows) == 4 + 2 + 1 + 4
    assert sorted((r["solver"], r["time_grid"], r["nfe"]) for r in rows if r["solver"] == "heun") == [("heun", "late", 2), ("heun", "uniform", 2)]
    fixed = [r for r in rows if r["solver"] != "adaptive"]
    assert all(r["nfe"] == r["num_steps"] * (2 if r["solver"] == "heun" else 1) for r in fixed)
    assert all(math.isfinite(r["fid"]) and 0 <= r["class_accuracy"] <= 1 for r in rows)
    adaptive = next(r for r in rows if r["solver"] == "adaptive")
    assert adaptive["nfe"] >= 2 and adaptive["tolerance"] == 1e-2
    # one step of euler on either grid is the same single step from 0 to 1: the same samples
    e1 = [r for r in rows if r["solver"] == "euler" and r["nfe"] == 1]
    assert e1[0]["fid"] == pytest.approx(e1[1]["fid"], rel=1e-9)
    table = (out / "nfe_sweep.md").read_text()
    assert table.count("\n| ") == len(rows) + 1 and "| adaptive | - | tol 0.01 |" in table
    png = (out / "nfe_sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert "FID(clf)" in stdout


def test_train_classifier_script_reports_accuracy_and_metadata(setup, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.safetensors"
    argv = ["--dataset", "mnist", "--data-root", setup["root"] / "data", "--image-size", "8", "--epochs", "0.5",
            "--batch-size", "50", "--out", out]
    code, stdout, _ = run_script("train_classifier.py", argv, monkeypatch, capsys)
    assert code == 0 and "test accuracy" in stdout and f"wrote {out}" in stdout
    _, info = load_classifier(out)
    assert info.dataset == "mnist" and info.image_size == 8 and 0.0 <= info.test_accuracy <= 1.0
    assert info.arch.widths == (32, 64, 128) and info.extra["train_images"] == "200"
    code, _, err = run_script("train_classifier.py", ["--data-root", tmp_path / "none", "--out", tmp_path / "x.safetensors"],
                              monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "mnist is not in" in err


def test_unconditional_models_get_fid_without_class_accuracy(setup, tmp_path):
    from imgflow.evaluation.fid import feature_statistics
    from imgflow.evaluation.runner import draw_samples, image_nll, score_samples
    from imgflow.factory import build_model
    from imgflow.sampling import SamplerSettings

    cfg = tiny_config(tmp_path / "u", **{"model.class_conditional": False})
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    clf, _ = load_classifier(setup["clf"])
    samples = draw_samples(model, cfg, SamplerSettings(solver="midpoint", num_steps=1), 12, seed=1)
    assert samples.labels is None and samples.nfe == 2 and samples.images.shape == (12, 1, 8, 8)
    ref = feature_statistics(clf.features(torch.rand(30, 1, 8, 8) * 2 - 1).detach())
    quality = score_samples(samples, clf, ref)
    assert quality.class_accuracy is None and "class_accuracy" not in quality.to_dict() and quality.fid >= 0
    images = load_image_data("mnist", setup["root"] / "data", train=False, download=False).images[:4]
    nll = image_nll(model, cfg, images, solver="euler", num_steps=2)
    assert nll.num_images == 4 and nll.nfe == 2 and math.isfinite(nll.bits_per_dim)
