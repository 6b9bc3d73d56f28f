"""A config refuses what it would ignore, moves what moved, and a new solver with a setting of its own is one class plus
one registry line (the worked example of docs/architecture.md)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from dataclasses import dataclass

import pytest
import torch

from imgflow import Sampler
from imgflow.cli import run
from imgflow.cli.sample import main as sample_main
from imgflow.cli.train import main as train_main
from imgflow.config import ConfigError, RunConfig, load_config
from imgflow.core import SOLVERS, ExplicitRungeKutta, MidpointSolver, register_solver
from imgflow.data import ImageData
from imgflow.training.trainer import Trainer, train
from tests.image_helpers import blob_images, tiny_config

FOLDER = {"data.dataset": "folder", "data.folder.path": "PICS"}
AUTOENCODER = {"model.arch": "autoencoder", "flow.objective": "autoencoder"}
MEAN_FLOW = {"flow.objective": "mean_flow", "sample.solver": "flow_map", "sample.num_steps": 1}


@pytest.mark.parametrize("overrides, message", [
    ({**FOLDER, "data.resize": True}, r"data.resize = True has no effect here: a folder's images are fitted to data.image_size by "
                                      r"data.folder.fit"),
    ({**FOLDER, "data.download": False}, r"data.download = False has no effect here: a folder's images are on disk already"),
    ({**FOLDER, "data.data_root": "../shared/data"}, r"data.data_root = '../shared/data' has no effect here: a folder's images are "
                                                     r"read from data.folder.path"),
    ({**MEAN_FLOW, "flow.time_sampling": "logit_normal"}, r"flow.time_sampling \(from command line\) has no effect with flow.objective = "
                                                          r"'mean_flow': it is \[flow.flow_matching\] time_sampling now"),
    ({**MEAN_FLOW, "flow.logit_normal_std": 2.0}, r"flow.logit_normal_std .*applies only to flow.objective = 'flow_matching'"),
    ({**MEAN_FLOW, "flow.flow_matching.time_sampling": "logit_normal"}, r"\[flow.flow_matching\] is set but flow.objective = 'mean_flow'"),
    ({**AUTOENCODER, "flow.schedule": "cosine"}, r"flow.schedule = 'cosine' has no effect here: an autoencoder reconstructs its images"),
    ({**AUTOENCODER, "flow.prediction": "noise"}, r"flow.prediction = 'noise' has no effect here: an autoencoder"),
    ({**AUTOENCODER, "flow.label_dropout": 0.2}, r"flow.label_dropout = 0.2 has no effect here: an autoencoder"),
    ({**AUTOENCODER, "flow.loss_reduction": "sum"}, r"flow.loss_reduction = 'sum' has no effect here: an autoencoder"),
    ({**AUTOENCODER, "sample.solver": "heun"}, r"sample.solver = 'heun' has no effect here: an autoencoder's grid shows reconstructions"),
    ({"model.unet.second_time": "end"}, r"model.unet.second_time = 'end' has no effect here: only a flow map has a second time"),
    ({"data.latent_cache_dir": "/tmp/x"}, r"data.latent_cache_dir = '/tmp/x' has no effect here: .*this run has no data.autoencoder"),
    ({"sample.rtol": 1e-5}, r"sample.rtol \(from command line\) has no effect with sample.solver = 'euler': it is \[sample.adaptive\] rtol"),
    ({"sample.sde_epsilon": 0.5}, r"sample.sde_epsilon .*it is \[sample.euler_maruyama\] sde_epsilon now"),
    ({"sample.adaptive.rtol": 1e-5}, r"\[sample.adaptive\] is set but sample.solver = 'euler'"),
    ({"model.arch": "lab_unet", "model.class_conditional": False}, r"model.class_conditional = False has no effect here: model.arch = "
                                                                    r"'lab_unet' always takes class labels"),
])
def test_a_key_without_effect_is_one_error_naming_it_and_why(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        tiny_config(tmp_path / "run", **overrides)
    assert "\n" not in str(err.value)


def test_a_key_at_its_default_changes_nothing_and_is_accepted(tmp_path):
    cfg = tiny_config(tmp_path / "run", **FOLDER, **{"data.download": True, "data.resize": False})
    assert "download" not in cfg.to_dict()["data"] and "resize" not in cfg.to_dict()["data"]  # what has no effect is not written
    assert RunConfig.from_json(cfg.to_json()).to_dict() == cfg.to_dict()


def test_guidance_on_a_model_without_labels_is_refused_before_anything_is_written(tmp_path):
    unlabelled = ImageData(blob_images(16).images, None)
    with pytest.raises(ConfigError, match=r"sample.guidance_scale = 2 guides with class labels, but the data has no classes"):
        Trainer(tiny_config(tmp_path / "run", **{"sample.guidance_scale": 2.0}), data=unlabelled)
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="sample.guidance_scale = 2 needs a class-conditional model"):
        tiny_config(tmp_path / "run", **{"sample.guidance_scale": 2.0, "model.class_conditional": False})
    trainer = Trainer(tiny_config(tmp_path / "run"), data=unlabelled)  # at guidance 1 it trains, unconditionally
    assert not trainer.record.conditional


def test_the_command_line_reports_a_key_without_effect_in_one_line_and_exit_2(tmp_path, capsys):
    argv = ["--config", "configs/smoke.toml", "--run.output_dir", str(tmp_path / "run"), "--data.dataset", "folder",
            "--data.folder.path", str(tmp_path), "--data.resize", "true"]
    assert run(train_main, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: config key data.resize = True has no effect here")
    assert not (tmp_path / "run").exists()


def test_keys_that_moved_into_a_variant_section_migrate_with_one_note(tmp_path, capsys):
    old = tmp_path / "old.toml"
    old.write_text('[flow]\ntime_sampling = "logit_normal"\nlogit_normal_std = 0.8\n'
                   '[sample]\nsolver = "adaptive"\nrtol = 1e-5\natol = 1e-6\n')
    cfg = load_config(old)
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 1 and "flow.time_sampling -> flow.flow_matching.time_sampling" in notes[0]
    assert "sample.rtol -> sample.adaptive.rtol" in notes[0]
    assert (cfg.flow.flow_matching.time_sampling, cfg.flow.flow_matching.logit_normal_std) == ("logit_normal", 0.8)
    assert (cfg.sample.options.rtol, cfg.sample.options.atol) == (1e-5, 1e-6)
    new = tmp_path / "new.toml"
    new.write_text('[flow.flow_matching]\ntime_sampling = "logit_normal"\nlogit_normal_std = 0.8\n'
                   '[sample]\nsolver = "adaptive"\n[sample.adaptive]\nrtol = 1e-5\natol = 1e-6\n')
    assert load_config(new).to_dict() == cfg.to_dict() and capsys.readouterr().err == ""
    # a config imgflow wrote before (a checkpoint's) that kept such a key under another variant: dropped, silently
    written = cfg.to_dict()
    written["sample"] = {"solver": "euler", "num_steps": 4, "sde_epsilon": 0.3, "rtol": 1e-3, "time_grid": "auto", "guidance_scale": 1.0}
    read = RunConfig.from_dict(written, written=True)
    assert read.sample.settings().option_values() == {} and capsys.readouterr().err == ""


def test_an_import_error_in_a_network_surfaces_with_its_own_message():
    """The registry never swallows an import failure (it used to turn one into "has no key or section 'dit'")."""
    code = "import sys; sys.modules['einops'] = None\nimport imgflow.config"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "einops" in proc.stderr.strip().splitlines()[-1], proc.stderr[-400:]


def test_an_unknown_name_names_the_key_the_closest_entry_and_every_choice(tmp_path):
    with pytest.raises(ConfigError, match=r"sample.solver = 'eulr' is not one of: euler, midpoint"):
        tiny_config(tmp_path, **{"sample.solver": "eulr"})
    sampler = Sampler(torch.nn.Conv2d(1, 1, 1), tiny_config(tmp_path))
    with pytest.raises(ConfigError, match=r"unknown solver 'eulr' \(sample.solver\); did you mean 'euler'\? choose one of: euler, "):
        sampler.settings("eulr")
    with pytest.raises(ConfigError, match=r"solver 'euler' has no setting 'rtol' \(it is a setting of adaptive\); its settings: none"):
        sampler.settings("euler", rtol=1e-3)


# --- the worked example: a solver with a setting of its own ------------------------------------------


@dataclass(frozen=True)
class RK2Options:
    """[sample.rk2]: alpha, where the second stage evaluates (0.5: midpoint, 1: Heun, 2/3: Ralston)."""

    alpha: float = 2.0 / 3.0

    def validate(self) -> None:
        if not 0.0 < self.alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {self.alpha}")


class RK2Solver(ExplicitRungeKutta):
    """The explicit two-stage Runge-Kutta family: k2 at t + alpha h, weights 1 - 1/(2 alpha) and 1/(2 alpha); order 2."""

    order = 2.0
    stage_offsets = (0.0, 2.0 / 3.0)

    def __init__(self, dynamics, progress: bool = False, alpha: float = 2.0 / 3.0) -> None:
        super().__init__(dynamics, progress)
        self.stage_offsets = (0.0, alpha)
        self.a = ((), (alpha,))
        self.b = (1.0 - 1.0 / (2.0 * alpha), 1.0 / (2.0 * alpha))


@pytest.fixture
def rk2():
    from imgflow.core.solvers import SolverInfo

    register_solver(SolverInfo("rk2", RK2Solver, options=RK2Options))  # the one registry line
    yield
    SOLVERS.unregister("rk2")


def test_a_new_solver_with_a_setting_is_one_class_and_one_registry_line(rk2, tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", **{"sample.solver": "rk2", "sample.rk2.alpha": 0.5, "train.steps": 2, "train.checkpoint_every": 2})
    assert cfg.sample.settings().options == RK2Options(alpha=0.5)
    with pytest.raises(ConfigError, match=r"\[sample.rk2\] alpha must be in \(0, 1\], got 1.5"):
        tiny_config(tmp_path / "bad", **{"sample.solver": "rk2", "sample.rk2.alpha": 1.5})
    train(cfg, data=blob_images(16), progress=False)
    sampler = Sampler.from_checkpoint(tmp_path / "run", device="cpu")
    assert sampler.defaults.solver == "rk2" and sampler.defaults.options.alpha == 0.5 and sampler.defaults.nfe == 8
    # alpha = 1/2 is the midpoint rule: the same operations, so the same numbers
    mid = sampler.sample(4, solver="midpoint", steps=3, seed=1).images
    assert torch.equal(sampler.sample(4, steps=3, seed=1).images, mid)
    ralston = sampler.sample(4, steps=3, seed=1, alpha=2 / 3)
    assert ralston.settings.options.alpha == 2 / 3 and not torch.equal(ralston.images, mid)
    assert MidpointSolver.order == RK2Solver.order
    # the sampling command line has --alpha without a line of its own
    out = tmp_path / "grid.png"
    assert run(sample_main, [str(tmp_path / "run"), "--out", str(out), "--num", "4", "--alpha", "0.75", "--no-progress"]) == 0
    assert "solver rk2" in capsys.readouterr().out and out.is_file()
    assert run(sample_main, [str(tmp_path / "run"), "--out", str(out), "--solver", "euler", "--alpha", "0.75"]) == 2
    assert "solver 'euler' has no setting 'alpha' (it is a setting of rk2)" in capsys.readouterr().err
    assert dataclasses.asdict(sampler.defaults.options) == {"alpha": 0.5}


def test_compile_with_a_flow_map_and_dropout_is_refused(tmp_path):
    """torch.compile draws its own dropout masks, so the JVP (eager) and the prediction (compiled) could not share them."""
    with pytest.raises(ConfigError, match="a compiled graph draws its own dropout masks"):
        tiny_config(tmp_path, **MEAN_FLOW, **{"train.compile": True, "model.unet.dropout": 0.1})
    assert tiny_config(tmp_path, **MEAN_FLOW, **{"train.compile": True}).train.compile  # without dropout it is fine
