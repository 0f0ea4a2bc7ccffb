"""A missing optional extra is one line naming the extra and the command, exit status 2, before any work.

Each entry point runs in a subprocess whose ``sys.modules`` maps the extra's modules to None, which is
how Python itself blocks an import (``import av`` raises, `importlib.util.find_spec` answers None).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest

from adain_jax import extras

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Runs ARGV[3:] as `python -m ARGV[2]` with the comma-separated modules of ARGV[1] blocked.
BLOCKED_RUN = ("import runpy, sys\n"
               "for name in sys.argv[1].split(','):\n"
               "    sys.modules[name] = None\n"
               "module = sys.argv[2]\n"
               "sys.argv = [module, *sys.argv[3:]]\n"
               "runpy.run_module(module, run_name='__main__', alter_sys=True)\n")


def run_blocked(cwd, blocked, module, *args):
    return subprocess.run([sys.executable, "-c", BLOCKED_RUN, ",".join(blocked), module, *args],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ADAIN_JAX_CACHE_DIR": "off"})


def assert_one_line(proc, extra):
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    if lines and lines[0].startswith("model: "):  # a command taking --weights names its model first (cli.run)
        lines = lines[1:]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ") and f"'{extra}' extra" in lines[0]
    assert f"pip install -e '.[{extra}]'" in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_lists_exactly_the_blocked_modules(monkeypatch):
    for extra, (modules, _) in extras.EXTRAS.items():
        monkeypatch.setitem(sys.modules, modules[0], None)
        assert extras.missing(extra)[0] == modules[0]
        with pytest.raises(extras.MissingExtraError, match=rf"needs the '{extra}' extra \({modules[0]}"):
            extras.require(extra, "something")


def test_the_install_commands_are_the_checkouts_extras():
    """Every extra named in a hint exists in pyproject.toml, so the printed command installs something."""
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(extras.EXTRAS) <= set(declared)
    assert extras.install_command("video") == "pip install -e '.[video]'"
    assert "--no-deps jax2onnx" in extras.install_command("export")


@pytest.mark.parametrize("blocked, module, args, extra", [
    (["av"], "adain_jax.cli", ["video", "--content", "in.mp4", "--style", "s.jpg", "--output", "o.mp4"], "video"),
    (["cv2"], "adain_jax.cli", ["video", "--content", "in.mp4", "--style", "s.jpg", "--output", "o.mp4"], "video"),
    (["hypercorn"], "adain_jax.cli", ["serve", "--port", "0"], "serve"),
    (["onnx"], "adain_jax.cli", ["export", "--format", "onnx", "--output", "out"], "export"),
    (["ml_collections", "absl"], "train.main", ["--workdir", "w"], "train"),
    (["tensorflow_datasets"], "train.studies", ["--study", "skip", "--workdir", "w"], "train"),
    (["torch"], "benchmarks.run", ["--quick"], "bench"),
], ids=["video-av", "video-cv2", "serve", "export-onnx", "train", "studies", "bench"])
def test_entry_point_without_its_extra_says_so_in_one_line(tmp_path, blocked, module, args, extra):
    # benchmarks/ is a folder of the checkout (run from its root); everything else runs from anywhere.
    from_root = module.startswith("benchmarks.")
    proc = run_blocked(ROOT if from_root else tmp_path, blocked, module, *args)
    assert_one_line(proc, extra)
    assert from_root or list(tmp_path.iterdir()) == []  # no work started: nothing written


def test_library_import_without_pyav_names_the_extra(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import sys; sys.modules['av'] = None\n"
                           "import adain_jax.video.container"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "adain_jax.extras.MissingExtraError: adain_jax.video needs the 'video' extra (av not installed)")


@pytest.mark.parametrize("name, extra", [("stylize", "notebooks"), ("train", "train")])
def test_notebook_first_cell_without_its_extra_names_it(tmp_path, name, extra):
    """The setup cell (run here as a script, in smoke mode) stops at once on a missing extra."""
    cells = json.loads((ROOT / "notebooks" / f"{name}.ipynb").read_text())["cells"]
    setup = "".join(next(c for c in cells if c["cell_type"] == "code")["source"])
    blocked = extras.EXTRAS[extra][0][0]
    code = f"import sys; sys.modules[{blocked!r}] = None\n" + setup
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT / "notebooks", capture_output=True, text=True,
                          timeout=120, env={**os.environ, "ADAIN_JAX_SMOKE": "1",
                                            "ADAIN_JAX_SMOKE_DIR": str(tmp_path)})
    assert proc.returncode == 1
    assert f"this notebook needs the '{extra}' extra ({blocked} not installed)" in proc.stderr.splitlines()[-1]
