"""`precision="bfloat16"`: bounded against float32 on held-out pairs, through oneDNN and through XLA;
the CLI's --precision, and float32 on a CPU without bfloat16 units (said once)."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import adain_jax
from adain_jax import cli, cpuinfo, examples, onednn, precision, tiling
from adain_jax.io import images as image_io
from helpers import ROOT

# The bound on [0, 1] outputs (the official weights gave 0.053 max with PyTorch's bf16 autocast).
MAX_ABS, MEAN_ABS = 0.06, 0.005
SIZE = 96

PAIRS_SCRIPT = """
import sys, numpy as np
sys.path.insert(0, {tests!r})
import test_precision as t
np.save(sys.argv[1], t.bf16_outputs())
"""


def held_out():
    """The packaged photographs and textures (never seen by any weights here), square crops."""
    d = examples.PACKAGED
    contents = np.stack([image_io.load_image(p, SIZE, crop=True) for p in image_io.list_images(d / "content")])
    styles = np.stack([image_io.load_image(p, SIZE, crop=True) for p in image_io.list_images(d / "style")])
    return contents, styles


def structured_weights():
    """Seeded random weights whose output is not a flat grey: the output layer's init scale (x 0.05)
    undone, so a bound on the difference is not met by outputs that barely vary."""
    weights = adain_jax.init_weights(jax.random.key(0))
    weights["decoder"]["conv1_1"]["kernel"] = weights["decoder"]["conv1_1"]["kernel"] * 20.0
    return weights


def bf16_outputs():
    contents, styles = held_out()
    return np.asarray(adain_jax.stylize(structured_weights(), contents, styles, precision="bfloat16"))


@pytest.fixture(scope="module")
def float32_outputs():
    contents, styles = held_out()
    return np.asarray(adain_jax.stylize(structured_weights(), contents, styles))


def assert_bounded(bf16, f32):
    diff = np.abs(bf16.astype(np.float64) - f32)
    assert diff.max() > 1e-4, "bfloat16 gave the float32 result: it was not computed in bfloat16"
    assert diff.max() <= MAX_ABS and diff.mean() <= MEAN_ABS, (diff.max(), diff.mean())


def test_bfloat16_is_bounded_against_float32_on_held_out_pairs(float32_outputs):
    assert float32_outputs.std() > 0.05 and ((float32_outputs > 0) & (float32_outputs < 1)).mean() > 0.9
    assert_bounded(bf16_outputs(), float32_outputs)


def test_the_xla_fallback_is_bounded_too_and_close_to_onednn(float32_outputs, tmp_path):
    """The same in a process with oneDNN switched off (`ADAIN_JAX_ONEDNN=0`): XLA's bfloat16 convolutions."""
    out = tmp_path / "xla.npy"
    env = {**os.environ, onednn.ENV: "0", "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "tests")])}
    proc = subprocess.run([sys.executable, "-c", PAIRS_SCRIPT.format(tests=str(ROOT / "tests")), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stderr.count("bfloat16 convolutions run through XLA instead") == 1  # one notice
    xla = np.load(out)
    assert_bounded(xla, float32_outputs)
    if onednn.available():  # both paths: same arithmetic, different summation orders
        assert np.abs(xla - bf16_outputs()).max() <= MAX_ABS / 2


def test_tiled_and_precomputed_moments_take_the_precision(float32_outputs):
    contents, styles = held_out()
    weights = structured_weights()
    tiled = tiling.stylize_tiled(weights, contents[:2], styles[:2], tile=tiling.min_tile(), precision="bfloat16")
    assert_bounded(tiled, float32_outputs[:2])
    mean, std = adain_jax.style_moments(weights, styles[:2], precision="bfloat16")
    assert mean.dtype == np.float32  # statistics stay float32
    with_moments = adain_jax.stylize_with_moments(weights, contents[:2], mean, std, precision="bfloat16")
    assert_bounded(np.asarray(with_moments), float32_outputs[:2])


def test_precision_names():
    assert precision.parse("bf16") == precision.parse("BFloat16") == "bfloat16"
    assert precision.parse("f32") == "float32"
    with pytest.raises(ValueError, match="float32, bfloat16"):
        precision.parse("float16")
    with pytest.raises(ValueError):
        adain_jax.stylize(structured_weights(), np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 3)),
                          precision="half")


def test_a_cpu_without_bfloat16_units_runs_float32_and_says_so_once(monkeypatch, capsys):
    monkeypatch.setattr(cpuinfo, "flags", lambda: {"avx2", "fma"})
    precision._notice.cache_clear()
    assert precision.effective("bfloat16") == "float32"
    assert precision.effective("bfloat16") == "float32"
    err = capsys.readouterr().err
    assert err.count("neither AVX512-BF16 nor AMX-BF16") == 1 and "running float32" in err
    assert precision.effective("float32") == "float32"


def test_cli_precision(monkeypatch, tmp_path, weights_dir, capsys):
    content = examples.PACKAGED / "content" / "chelsea.jpg"
    style = examples.PACKAGED / "style" / "brick.jpg"

    def run(name, *extra):
        out = tmp_path / name
        assert cli.main(["stylize", "--content", str(content), "--style", str(style), "--weights", str(weights_dir),
                         "--content-size", "64", "--style-size", "64", "--ext", "png", "--output", str(out),
                         *extra]) == 0
        return np.asarray(image_io.load_image(next(out.glob("*.png")), 0))

    f32 = run("f32")
    bf16 = run("bf16", "--precision", "bfloat16")
    assert np.abs(bf16 - f32).max() <= MAX_ABS
    monkeypatch.setattr(cpuinfo, "flags", lambda: set())
    precision._notice.cache_clear()
    assert np.array_equal(run("no-units", "--precision", "bf16"), f32)  # ran float32
    assert "running float32" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["stylize", "--content", str(content), "--style", str(style), "--precision", "half"])
    assert "precision must be one of float32, bfloat16" in capsys.readouterr().err
