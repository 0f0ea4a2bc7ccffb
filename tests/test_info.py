"""`adain-jax info`: versions, backend and devices, the XLA:CPU setting, the weights in use and the extras."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from convert import vgg_to_flax

torch = pytest.importorskip("torch")
import torch_reference  # noqa: E402  (after the skip: it imports torch)

CONSOLE_SCRIPT = pathlib.Path(sys.executable).parent / "adain-jax"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """A converter output from official-layout (random, so not official) files."""
    root = tmp_path_factory.mktemp("info")
    vgg, dec = torch_reference.save_official_files(root / "pth", seed=5, legacy=True)
    return vgg_to_flax.convert(vgg, dec, root / "flax"), vgg, dec


def run_info_process(cwd, *args, **env):
    """The console script, as a user runs it, from a folder outside the checkout ($ADAIN_JAX_WEIGHTS only
    when given here)."""
    environment = {k: v for k, v in os.environ.items() if k != "ADAIN_JAX_WEIGHTS"}
    proc = subprocess.run([str(CONSOLE_SCRIPT), "info", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**environment, **env})
    assert proc.returncode == 0, proc.stderr
    return proc


def run_info(cwd, *args, **env):
    return run_info_process(cwd, *args, **env).stdout


def test_json_reports_versions_backend_devices_and_the_weights_with_their_blob_ids(converted, tmp_path):
    import jax
    import jaxlib

    out, vgg, dec = converted
    report = json.loads(run_info(tmp_path, "--json", ADAIN_JAX_WEIGHTS=str(out)))
    assert report["versions"]["jax"] == jax.__version__ and report["versions"]["jaxlib"] == jaxlib.__version__
    assert report["versions"]["adain-jax"] is not None and report["versions"]["flax"] is not None
    assert report["backend"] == "cpu"
    assert report["device_count"] == len(report["devices"]) >= 1
    assert {d["platform"] for d in report["devices"]} == {"cpu"}
    assert report["xla_cpu"]["status"] in ("applied", "present", "disabled", "untested-jaxlib")
    weights = report["weights"]
    assert weights["found"] and weights["official"] is False
    assert weights["sources"]["vgg"]["git_blob_id"] == vgg_to_flax.git_blob_id(vgg)
    assert weights["sources"]["decoder"]["git_blob_id"] == vgg_to_flax.git_blob_id(dec)
    # this environment is `make test`'s: the test extras are installed, and each hint is runnable
    assert report["extras"]["video"]["installed"] and report["extras"]["serve"]["installed"]
    assert report["extras"]["video"]["install"] == "pip install -e '.[video]'"


def test_text_says_what_runs_and_that_the_weights_are_not_official(converted, tmp_path):
    out, _, _ = converted
    text = run_info(tmp_path, "--weights", str(out))
    assert "backend: cpu" in text
    assert f"weights: {out} (NOT the official release files)" in text
    assert "extras: video yes" in text


def test_missing_weights_are_reported_not_fatal(tmp_path):
    report = json.loads(run_info(tmp_path, "--json", "--weights", str(tmp_path / "none")))
    assert report["weights"]["found"] is False and "no such weights directory" in report["weights"]["error"]
    text = run_info(tmp_path, "--weights", str(tmp_path / "none"))
    # No command falls back to random weights any more: they run only when asked for by name.
    assert "commands that need them exit (--weights random runs random weights)" in text
    assert "RANDOM" not in text


def test_random_weights_asked_for_are_named_random(tmp_path):
    proc = run_info_process(tmp_path, "--json", "--weights", "random")
    assert proc.stderr.splitlines()[0].startswith("model: RANDOM WEIGHTS")
    weights = json.loads(proc.stdout)["weights"]
    assert weights["found"] and weights["kind"] == "random" and weights["official"] is False
    assert weights["model"].startswith("RANDOM WEIGHTS")
    assert "  model: RANDOM WEIGHTS" in run_info(tmp_path, "--weights", "random")


def test_without_weights_or_settings_the_packaged_model_is_described(tmp_path):
    """From a folder with no weights/flax and no $ADAIN_JAX_WEIGHTS: the model packaged with adain-jax."""
    from adain_jax import pretrained

    if not pretrained.available():
        pytest.skip("the packaged model (adain_jax/pretrained/weights.npz) is not in this checkout")
    proc = run_info_process(tmp_path)
    first = proc.stderr.splitlines()[0]
    assert first.startswith("model: the packaged model adain-jax-open"), proc.stderr
    assert f"weights: {pretrained.DIRECTORY} (NOT the official release files)" in proc.stdout
    assert f"  {first}" in proc.stdout
    assert "RANDOM" not in proc.stdout + proc.stderr
