"""adain_jax.cli.options: which weights a command uses without --weights ($ADAIN_JAX_WEIGHTS, then
weights/flax where it runs, then the model packaged with adain-jax), loading them with the model's name
(random weights only when asked for by name), and the ``model: ...`` line every such command says first."""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

import pytest
from helpers import write_image

from adain_jax import pretrained
from adain_jax.cli import options
from adain_jax.io import weights as weights_lib

CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / "adain-jax"


@pytest.fixture
def elsewhere(tmp_path, monkeypatch):
    """A working directory with no weights/flax, and no $ADAIN_JAX_WEIGHTS."""
    monkeypatch.delenv("ADAIN_JAX_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def packaged():
    if not pretrained.available():
        pytest.skip("the packaged model (adain_jax/pretrained/weights.npz) is not in this checkout")


def test_without_settings_or_weights_flax_the_packaged_model_is_the_default(elsewhere, packaged):
    assert options.default_weights() == pretrained.DIRECTORY
    parser = argparse.ArgumentParser()
    options.add_weights_argument(parser)
    assert parser.parse_args([]).weights == pretrained.DIRECTORY
    assert weights_lib.describe(pretrained.DIRECTORY)["kind"] == "packaged"


def test_weights_flax_in_the_working_directory_comes_before_the_packaged_model(elsewhere):
    (elsewhere / "weights" / "flax").mkdir(parents=True)  # the converted official files go here
    assert options.default_weights() == pathlib.Path("weights/flax")


def test_the_environment_comes_first(elsewhere, monkeypatch):
    (elsewhere / "weights" / "flax").mkdir(parents=True)
    monkeypatch.setenv("ADAIN_JAX_WEIGHTS", str(elsewhere / "mine"))
    assert options.default_weights() == elsewhere / "mine"
    monkeypatch.setenv("ADAIN_JAX_WEIGHTS", weights_lib.RANDOM)  # random weights, asked for by name
    assert options.default_weights() == pathlib.Path(weights_lib.RANDOM)
    monkeypatch.setenv("ADAIN_JAX_WEIGHTS", "")  # empty: as if not set
    assert options.default_weights() == pathlib.Path("weights/flax")


def test_without_the_packaged_files_the_default_names_where_the_official_files_go(elsewhere, monkeypatch):
    monkeypatch.setattr(pretrained, "available", lambda: False)  # a checkout without its large files
    assert options.default_weights() == pathlib.Path("weights/flax")


def test_load_model_names_the_model_and_says_whether_it_is_random(weights_dir, tmp_path):
    weights, model, is_random = options.load_model(pathlib.Path(weights_lib.RANDOM))
    assert is_random and model.startswith("RANDOM WEIGHTS") and set(weights) >= {"encoder", "decoder"}
    _, model, is_random = options.load_model(weights_dir)
    assert not is_random and model == f"weights from {weights_dir} (random)"  # the fixture's note
    with pytest.raises(FileNotFoundError, match="no such weights directory"):
        options.load_model(tmp_path / "absent")  # no fallback: the command reports it


def test_load_model_of_the_packaged_model(packaged):
    weights, model, is_random = options.load_model(pretrained.DIRECTORY)
    assert not is_random and model.startswith("the packaged model adain-jax-open")
    assert weights["decoder"]["conv1_1"]["kernel"].dtype == "float32"  # stored in float16


def test_model_line(weights_dir, tmp_path):
    assert options.model_line(pathlib.Path("random")).startswith("model: RANDOM WEIGHTS")
    assert options.model_line(weights_dir) == f"model: weights from {weights_dir} (random)"
    assert options.model_line(tmp_path / "absent") is None  # the command itself says why


def stylize(cwd: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    """``adain-jax stylize`` on two small images, as a user runs it from ``cwd`` (no $ADAIN_JAX_WEIGHTS)."""
    content = write_image(cwd / "c.png", 40, 48, seed=1)
    style = write_image(cwd / "s.png", 32, 32, seed=2)
    env = {k: v for k, v in os.environ.items() if k != "ADAIN_JAX_WEIGHTS"}
    return subprocess.run([str(CONSOLE_SCRIPT), "stylize", "--content", str(content), "--style", str(style),
                           "--content-size", "0", "--style-size", "0", "--output", str(cwd / "out"), *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_a_command_says_which_model_runs_first(tmp_path, packaged):
    result = stylize(tmp_path)
    assert result.returncode == 0, result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("model: the packaged model adain-jax-open"), result.stderr
    assert "RANDOM" not in result.stderr + result.stdout
    assert [p.stem for p in (tmp_path / "out").iterdir()] == ["c_stylized_s"]


def test_random_weights_asked_for_are_said_first(tmp_path):
    result = stylize(tmp_path, "--weights", "random")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0].startswith("model: RANDOM WEIGHTS")


def test_unusable_weights_give_no_model_line_but_one_error(tmp_path):
    result = stylize(tmp_path, "--weights", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert not result.stderr.startswith("model:")
    assert [line for line in result.stderr.splitlines() if line.startswith("error: ")], result.stderr
    assert not (tmp_path / "out").exists()
