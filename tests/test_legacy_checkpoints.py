"""Checkpoints written before the backbone registry (commit 851a3ad, issue 16) still sample, unchanged.

tests/fixtures/pre_backbone holds two 40-step runs of configs/smoke.toml (base_channels 8) on MNIST as
that code wrote them, a velocity model and a MeanFlow flow map, and the samples that code drew from them
(`expected_samples.safetensors`: Sampler.from_checkpoint(...).sample(..., clip=False)). Sampling is
deterministic per (seed, sample index), so the same weights and the same solver give the same numbers:
the tolerance only covers float32 summation order (1e-4 against values of order 1).
"""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imgflow import Sampler

FIXTURES = Path(__file__).parent / "fixtures" / "pre_backbone"
EXPECTED = load_file(str(FIXTURES / "expected_samples.safetensors"))
TOL = 1e-4


@pytest.fixture(scope="module")
def velocity() -> Sampler:
    return Sampler.from_checkpoint(FIXTURES / "velocity.safetensors", device="cpu")


@pytest.fixture(scope="module")
def meanflow() -> Sampler:
    return Sampler.from_checkpoint(FIXTURES / "meanflow.safetensors", device="cpu")


def test_pre_issue_velocity_checkpoint_samples_unchanged(velocity):
    assert not velocity.flow_map and velocity.class_names[:2] == ("0 - zero", "1 - one")
    torch.testing.assert_close(velocity.sample(6, seed=3, clip=False).images, EXPECTED["velocity_default"], atol=TOL, rtol=0)
    got = velocity.sample(6, seed=5, solver="heun", steps=4, guidance=1.0, clip=False).images
    torch.testing.assert_close(got, EXPECTED["velocity_heun4_uncond"], atol=TOL, rtol=0)


def test_pre_issue_meanflow_checkpoint_samples_unchanged(meanflow):
    assert meanflow.flow_map and meanflow.defaults.solver == "flow_map" and meanflow.trained_guidance == 1.5
    torch.testing.assert_close(meanflow.sample(6, seed=3, clip=False).images, EXPECTED["meanflow_1step"], atol=TOL, rtol=0)
    torch.testing.assert_close(meanflow.sample(6, seed=3, steps=2, clip=False).images, EXPECTED["meanflow_2step"], atol=TOL, rtol=0)
    got = meanflow.sample(6, labels=[1, 7], seed=4, solver="euler", steps=8, clip=False).images
    torch.testing.assert_close(got, EXPECTED["meanflow_euler8"], atol=TOL, rtol=0)


def test_keys_from_a_newer_version_cost_one_warning_line_and_nothing_else(tmp_path, capsys):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from imgflow.checkpoint import load_checkpoint

    src = FIXTURES / "velocity.safetensors"
    with safe_open(str(src), "pt") as fh:
        metadata, tensors = dict(fh.metadata()), {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    # re-save as this version does (with a record), then add what a newer one might write
    record = json.loads(load_checkpoint(src).record.to_json())
    record["options"]["rotary_positions"] = True
    record["latent_autoencoder"] = None
    config = json.loads(metadata["config"])
    config["train"]["muon_momentum"] = 0.95
    config["new_section"] = {"x": 1}
    newer = tmp_path / "newer.safetensors"
    save_file(tensors, str(newer), metadata={**metadata, "config": json.dumps(config), "model_record": json.dumps(record)})
    capsys.readouterr()
    sampler = Sampler.from_checkpoint(newer, device="cpu")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "options.rotary_positions" in err[0] and "latent_autoencoder" in err[0]
    torch.testing.assert_close(sampler.sample(6, seed=3, clip=False).images, EXPECTED["velocity_default"], atol=TOL, rtol=0)
    from imgflow.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="cannot resume from .*not valid in this version.*unknown config section"):
        load_checkpoint(newer).training_config()
