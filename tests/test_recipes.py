"""The shipped run configs (imgflow/configs, imgflow.recipes): found by name, loadable, shipped in the wheel, and the same
files as a clone's root `configs` folder."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from imgflow import config_path
from imgflow.cli import run
from imgflow.config import ConfigError, load_config
from imgflow.recipes import CONFIGS, config_names, is_bare_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_CONFIGS = ROOT / "imgflow" / "configs"


def test_every_shipped_file_is_found_by_name_and_loads(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files = sorted(PACKAGE_CONFIGS.iterdir())
    assert len(files) >= 20 and all(f.suffix == ".toml" for f in files), [f.name for f in files]
    assert CONFIGS.resolve() == PACKAGE_CONFIGS.resolve()
    assert config_names() == [f.stem for f in files]
    for f in files:
        assert config_path(f.stem) == config_path(f.name) == CONFIGS / f.name
        folder = {"data.folder.path": "PICS"} if "folder" in f.stem else {}  # a folder recipe needs its images' folder
        assert load_config(f.stem, folder).to_dict() == load_config(f, folder).to_dict()


def test_an_unknown_name_lists_the_shipped_ones_and_suggests_the_nearest():
    with pytest.raises(ConfigError, match=r"no shipped config 'vae_mnst'; did you mean 'vae_mnist'\? the package ships: cifar10, .*smoke") as info:
        config_path("vae_mnst")
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match=r"no shipped config 'zzzz'; the package ships: "):
        config_path("zzzz")


def test_a_bare_name_given_as_config_is_the_shipped_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no mnist.toml here
    shipped = load_config(config_path("mnist")).to_dict()
    assert load_config("mnist").to_dict() == shipped
    assert load_config("mnist.toml", {"train.steps": 7}).train.steps == 7
    assert load_config("smoke").to_dict() != shipped
    # a file of that name in the working folder is still read first
    (tmp_path / "mnist.toml").write_text("[train]\nsteps = 3\n")
    assert load_config("mnist.toml").train.steps == 3


def test_a_missing_path_keeps_its_error_and_says_that_names_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"config file configs/mnst.toml does not exist; .*\(e\.g\. --config mnist\): cifar10, .*vae_mnist$"):
        load_config("configs/mnst.toml")  # a folder part: never a shipped name
    with pytest.raises(ConfigError, match=r"config file mnst does not exist; .*; did you mean 'mnist'\?$"):
        load_config("mnst")
    from imgflow.cli.train import main

    assert run(main, ["--config", "mnst.toml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error: config file mnst.toml does not exist" in err and "--config mnist" in err


@pytest.mark.parametrize(("text", "bare"), [("mnist", True), ("mnist.toml", True), ("configs/mnist.toml", False), ("./mnist", False),
                                            ("/tmp/mnist.toml", False), ("..", False), ("", False)])
def test_what_counts_as_a_bare_name(text, bare):
    assert is_bare_name(text) is bare


def test_the_package_data_declaration_ships_every_config():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["imgflow"]
    shipped = {p for pattern in declared for p in (ROOT / "imgflow").glob(pattern)}
    missing = sorted(p.name for p in PACKAGE_CONFIGS.iterdir() if p not in shipped)
    assert not missing, f"imgflow/configs files no package-data pattern ships: {missing}"


def test_the_clone_root_configs_is_a_relative_link_to_the_package_folder():
    link = ROOT / "configs"
    assert link.is_symlink() and os.readlink(link) == "imgflow/configs"
    assert link.resolve() == PACKAGE_CONFIGS.resolve()
    assert (link / "mnist.toml").read_bytes() == config_path("mnist").read_bytes()
