"""Evaluation as library calls (evaluate_checkpoint, sweep_checkpoint, fit_classifier) and their command lines,
on a tiny trained model and tiny IDX data."""

import json
import math
from pathlib import Path

import pytest
import torch

from imgflow.cli import run
from imgflow.cli.classifier import main as classifier_main
from imgflow.cli.evaluate import main as evaluate_main
from imgflow.cli.sweep import main as sweep_main
from imgflow.config import ConfigError, load_config
from imgflow.data import data_identity, load_image_data
from imgflow.evaluation import (
    ClassifierArch,
    Judge,
    NLLSettings,
    evaluate_checkpoint,
    image_nll,
    load_classifier,
    save_classifier,
    sweep_checkpoint,
    train_classifier,
)
from imgflow.evaluation.classifier import fit_classifier
from imgflow.resolved_run import build_model
from imgflow.sampler import Sampler
from imgflow.training.trainer import train
from tests.image_helpers import blob_images, tiny_config, write_idx_mnist


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
    save_classifier(root / "clf.safetensors", res.model, data_identity(cfg.data), res.test_accuracy, tr.spec.class_names)
    return {"root": root, "run": root / "run", "clf": root / "clf.safetensors", "test_accuracy": res.test_accuracy, "cfg": cfg}


def test_tiny_classifier_learns_the_blobs_and_round_trips(setup):
    # 10 well-separated patterns with pixel noise: 4 epochs of 200 images are plenty
    assert setup["test_accuracy"] > 0.9
    model, info = load_classifier(setup["clf"])
    assert info.dataset == "mnist" and info.image_size == 8 and info.test_accuracy == pytest.approx(setup["test_accuracy"])
    assert info.identity == {"dataset": "mnist", "image_size": "8", "resize": "False"} and len(info.class_names) == 10
    assert model.features(torch.zeros(3, 1, 8, 8)).shape == (3, 16) and model(torch.zeros(3, 1, 8, 8)).shape == (3, 10)


def test_evaluate_checkpoint_returns_a_report_and_caches_the_reference(setup, tmp_path):
    kw = dict(num=40, steps=2, guidance=[1, 3], nll=NLLSettings(images=12, solver="rk4", num_steps=2), cache_dir=tmp_path / "cache")
    report = evaluate_checkpoint(setup["run"], setup["clf"], **kw)
    assert [r.guidance for r in report.results] == [1.0, 3.0]
    for r in report.results:
        assert math.isfinite(r.fid) and r.fid >= 0
        assert 0.0 <= r.class_accuracy <= 1.0 and len(r.per_class_accuracy) == 10
        assert r.num_samples == 40 and r.nfe == 2 and r.nonfinite == 0
    # every number says what it was measured against
    assert report.reference["split"] == "test" and report.reference["num_images"] == 60 and report.reference["cached"] is False
    assert report.num_samples == 40 and math.isfinite(report.fid_real_train_images) and report.fid_real_train_images >= 0
    nll = report.nll
    # a barely trained model: the code length is finite and (dequantised 8-bit data) positive
    assert nll.num_images == 12 and len(nll.per_image) == 12 and 0 < nll.bits_per_dim < 50
    assert nll.nfe == 8 and nll.settings["solver"] == "rk4" and nll.settings["grid_power"] == 3.0  # rk4, 2 steps
    summary = "\n".join(report.lines())
    assert f"{report.results[0].fid:9.3f}" in summary and f"{nll.bits_per_dim:.4f}" in summary
    assert json.loads(json.dumps(report.to_dict()))["results"][1]["guidance"] == 3.0

    again = evaluate_checkpoint(setup["run"], setup["clf"], **kw)
    assert again.reference["cached"] is True
    assert again.results[0].fid == pytest.approx(report.results[0].fid, rel=1e-6)  # same seeds, same samples
    assert again.nll.bits_per_dim == pytest.approx(nll.bits_per_dim, rel=1e-5)


def test_evaluate_command_prints_the_report_and_writes_json(setup, tmp_path, capsys):
    out = tmp_path / "eval.json"
    code = run(evaluate_main, [str(setup["run"]), "--classifier", str(setup["clf"]), "--num", "20", "--steps", "1",
                               "--bpd-images", "0", "--json", str(out), "--cache-dir", str(tmp_path / "c"), "--quiet"])
    printed = capsys.readouterr().out
    assert code == 0
    report = json.loads(out.read_text())
    assert [r["guidance"] for r in report["results"]] == [1.0]  # 1 and the run's own scale (also 1 here)
    assert f"{report['results'][0]['fid']:9.3f}" in printed and f"wrote {out}" in printed


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--classifier", "{tmp}/missing.safetensors"], "classifier file {tmp}/missing.safetensors does not exist; train one with"),
        (["--classifier", "{clf}", "--inception"], "Inception FID needs torch-fidelity, which is not installed"),
        (["--classifier", "{clf}", "--json", "{tmp}/nodir/out.json"], "--json folder {tmp}/nodir does not exist"),
        (["--classifier", "{clf}", "--data-root", "{tmp}/nodata"], "mnist is not in {tmp}/nodata/MNIST/raw"),
        (["--classifier", "{clf}", "--guidance", "1,x"], "--guidance must be comma-separated numbers"),
        (["--classifier", "{wrong}"], "was trained for dataset fashion_mnist (the model's is mnist), image_size 28"),
        (["--classifier", "{clf}", "--bpd-images", "many"], "argument --bpd-images: invalid int value: 'many'"),
        (["--classifier", "{clf}", "--num", "1"], "num must be >= 2"),
        (["--classifier", "{clf}", "--solver", "flow_map"], "solver 'flow_map' jumps with a flow-map model"),
    ],
    ids=["missing-classifier", "no-inception", "unwritable-json", "missing-dataset", "bad-guidance", "wrong-classifier",
         "bad-number", "too-few-samples", "flow-map-solver"],
)
def test_evaluate_bad_input_is_one_line(setup, tmp_path, capsys, extra, message):
    if "--inception" in extra:
        try:
            import torch_fidelity  # noqa: F401

            pytest.skip("torch-fidelity is installed here")
        except ImportError:
            pass
    wrong = tmp_path / "wrong.safetensors"
    if "{wrong}" in extra:
        model, _ = load_classifier(setup["clf"])
        save_classifier(wrong, model, {"dataset": "fashion_mnist", "image_size": "28"}, 0.9)
    fill = {"tmp": tmp_path, "clf": setup["clf"], "wrong": wrong}
    argv = [str(setup["run"]), "--num", "4", "--bpd-images", "0", "--quiet", *[a.format(**fill) for a in extra]]
    code = run(evaluate_main, argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert message.format(**fill) in lines[0], lines[0]
    assert not (tmp_path / "nodir").exists()


def test_nfe_sweep_writes_table_json_and_plot(setup, tmp_path):
    out = tmp_path / "sweep"
    report = sweep_checkpoint(setup["run"], setup["clf"], out, solvers=["euler", "heun", "adaptive", "euler_maruyama"], nfes=[1, 2],
                              tolerances=[1e-2], grids=["uniform", "late"], num=20, cache_dir=tmp_path / "cache")
    rows = report.rows
    # euler: NFE 1 and 2 on two grids; heun: only NFE 2 (2 per step) on two grids; adaptive: one tolerance; EM: 1, 2 on two grids
    assert len(rows) == 4 + 2 + 1 + 4
    assert sorted((r.solver, r.time_grid, r.nfe) for r in rows if r.solver == "heun") == [("heun", "late", 2), ("heun", "uniform", 2)]
    fixed = [r for r in rows if r.solver != "adaptive"]
    assert all(r.nfe == r.steps * (2 if r.solver == "heun" else 1) for r in fixed)
    assert all(math.isfinite(r.fid) and 0 <= r.class_accuracy <= 1 for r in rows)
    adaptive = next(r for r in rows if r.solver == "adaptive")
    assert adaptive.nfe >= 2 and adaptive.tolerance == 1e-2
    # one step of euler on either grid is the same single step from 0 to 1: the same samples
    e1 = [r for r in rows if r.solver == "euler" and r.nfe == 1]
    assert e1[0].fid == pytest.approx(e1[1].fid, rel=1e-9)
    assert json.loads((out / "nfe_sweep.json").read_text())["rows"][0]["solver"] == rows[0].solver
    table = (out / "nfe_sweep.md").read_text()
    assert table.count("\n| ") == len(rows) + 1 and "| adaptive | - | tol 0.01 |" in table
    png = (out / "nfe_sweep.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_sweep_command_rejects_bad_lists_in_one_line(setup, tmp_path, capsys):
    for extra, message in ((["--solvers", "euler,rk5"], "--solvers must be a comma-separated subset"),
                           (["--nfe", "4,x"], "--nfe must be comma-separated integers"),
                           (["--solvers", "rk4", "--nfe", "2"], "no setting fits")):
        code = run(sweep_main, [str(setup["run"]), "--classifier", str(setup["clf"]), "--out-dir", str(tmp_path / "s"), *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and message in err[0], err


def test_fit_classifier_takes_a_runs_data_and_stores_its_identity(setup, tmp_path, capsys):
    cfg = load_config(None, {"data.data_root": str(setup["root"] / "data"), "data.image_size": 8, "data.download": False})
    result, path = fit_classifier(cfg.data, tmp_path / "c.safetensors", epochs=0.5, batch_size=50)
    _, info = load_classifier(path)
    assert info.identity == data_identity(cfg.data) and 0.0 <= info.test_accuracy <= 1.0
    assert info.arch.widths == (32, 64, 128) and info.extra["train_images"] == "200" and result.steps == 2
    # the command line takes the [data] section of a run folder (its stored config) and any --data.KEY
    code = run(classifier_main, ["--run", str(setup["run"]), "--epochs", "0.5", "--batch-size", "50", "--out", str(tmp_path / "r.safetensors")])
    assert code == 0 and f"wrote {tmp_path / 'r.safetensors'}" in capsys.readouterr().out
    code = run(classifier_main, ["--data-root", str(tmp_path / "none"), "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "mnist is not in" in err[0]


def test_unconditional_models_get_fid_without_class_accuracy(setup, tmp_path):
    cfg = tiny_config(tmp_path / "u", **{"model.class_conditional": False, "data.data_root": str(setup["root"] / "data")})
    torch.manual_seed(0)
    spec = blob_images(20).spec
    sampler = Sampler(build_model(cfg, spec).eval(), cfg, spec)
    samples = sampler.sample(12, solver="midpoint", steps=1, seed=1)
    assert samples.labels is None and samples.nfe == 2 and samples.images.shape == (12, 1, 8, 8)
    judge = Judge.load(setup["clf"], cfg.data, spec, cache_dir=tmp_path / "c")
    quality = judge.score(samples.images, samples.labels)
    assert quality.class_accuracy is None and "class_accuracy" not in quality.to_dict() and quality.fid >= 0
    with pytest.raises(ConfigError, match="needs a class-conditional model"):
        sampler.sample(2, guidance=2.0)
    with pytest.raises(ConfigError, match="labels need a class-conditional model"):
        sampler.sample(2, labels=[1])
    images = load_image_data("mnist", setup["root"] / "data", train=False, download=False).images[:4]
    nll = image_nll(sampler, images, solver="euler", num_steps=2)
    assert nll.num_images == 4 and nll.nfe == 2 and math.isfinite(nll.bits_per_dim)
    assert Path(judge.reference.cache_path).is_file()


def test_autoencoder_and_latent_runs_are_scored_by_the_same_tools(setup, tmp_path, capsys):
    """The autoencoder gets PSNR and reconstruction FID(clf); its latent model is evaluated and swept like a pixel model."""
    from PIL import Image

    from imgflow.evaluation.autoencoder import evaluate_autoencoder

    data_root = {"data.data_root": str(setup["root"] / "data")}
    ae = tmp_path / "ae"
    train(tiny_config(ae, **data_root, **{"model.arch": "autoencoder", "flow.objective": "autoencoder", "model.autoencoder.factor": 2,
                                          "model.autoencoder.base_channels": 4, "train.steps": 30, "train.lr": 3e-3,
                                          "train.checkpoint_every": 30}), progress=False)
    figure = tmp_path / "rec.png"
    report = evaluate_autoencoder(ae, setup["clf"], num=40, figure=figure)
    assert report.num_images == 40 and report.latent_shape == (4, 4, 4) and report.compression == 1.0
    # 30 steps on blobs reconstruct them far better than a blank image, whose MSE is about 0.9 (PSNR 6.5 dB)
    assert report.psnr_db > 10 and report.mse < 0.4 and math.isfinite(report.reconstruction_fid)
    assert Image.open(figure).size == (8 * 10 + 2, 5 * 10 + 2)  # 16 originals, a blank row, 16 reconstructions
    assert run(evaluate_main, [str(ae), "--classifier", str(setup["clf"]), "--num", "40"]) == 0
    assert f"PSNR {report.psnr_db:.2f} dB" in capsys.readouterr().out

    latent = tmp_path / "latent"
    train(tiny_config(latent, **data_root, **{"data.autoencoder": str(ae), "data.latent_cache_dir": str(tmp_path / "cache"),
                                              "train.steps": 4}), progress=False)
    said: list[str] = []
    scored = evaluate_checkpoint(latent, setup["clf"], num=20, steps=2, guidance=[1], nll=NLLSettings(images=12), log=said.append,
                                 cache_dir=tmp_path / "ref")
    assert scored.image_size == 8 and math.isfinite(scored.results[0].fid) and scored.nll is None
    assert any("bits/dim is skipped for a latent model" in m for m in said)
    sweep = sweep_checkpoint(latent, setup["clf"], tmp_path / "sweep", solvers=["euler"], nfes=[1, 2], grids=["uniform"], num=20,
                             cache_dir=tmp_path / "ref")
    assert [r.nfe for r in sweep.rows] == [1, 2] and all(math.isfinite(r.fid) for r in sweep.rows)


@pytest.mark.torchrun
def test_evaluate_under_torchrun_shards_the_samples_and_reports_one_processs_numbers(setup, tmp_path, capsys):
    import subprocess
    import sys
    from pathlib import Path

    common = [str(setup["run"]), "--classifier", str(setup["clf"]), "--num-images", "20", "--steps", "2", "--bpd-images", "0",
              "--no-baseline", "--quiet"]
    assert run(evaluate_main, [*common, "--json", str(tmp_path / "one.json"), "--cache-dir", str(tmp_path / "one")]) == 0
    script = Path(__file__).resolve().parents[1] / "scripts" / "evaluate.py"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), *common,
                           "--json", str(tmp_path / "two.json"), "--cache-dir", str(tmp_path / "two")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("wrote ") == 1  # rank 0 reports
    one, two = (json.loads((tmp_path / f"{n}.json").read_text())["results"][0] for n in ("one", "two"))
    assert two["num_samples"] == one["num_samples"] == 20
    assert two["class_accuracy"] == one["class_accuracy"] and two["fid"] == pytest.approx(one["fid"], rel=1e-4)
    assert len(list((tmp_path / "two").glob("*.stats.safetensors"))) == 1  # one cache of the reference statistics (built under its lock)
