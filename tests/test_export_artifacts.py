"""`adain-jax export` and `adain_jax.export`: StableHLO and ONNX artifacts against `adain_jax.stylize`.

(tests/test_export.py is about train/export.py, the training-checkpoint exporter.)

Every artifact is compared with the library at two sizes (27x35 is not a multiple of 8) and two
alphas, to 1e-4 on [0, 1]. The StableHLO artifact is also run by a fresh Python that never imports
adain_jax. Bad input (weights, format, output directory) gives one line, a non-zero status and no
artifact. Export and compile times matter on a small CI machine, so the images are tiny, one
export per format is shared by the module, and the ONNX ``stylize`` (the composition of the other
two) is exported only in the slow test.
"""

import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

import adain_jax
from adain_jax import cli
from adain_jax import export as export_lib
from adain_jax.export import graph, stablehlo
from adain_jax.model import networks

SIZES = ((32, 40), (27, 35))
ALPHAS = (1.0, 0.5)
STYLE_SIZE = (24, 29)
TOL = 1e-4

# The README's snippet: run an artifact with JAX alone.
FRESH_PROCESS = """
import sys
import numpy as np
from jax import export

stylize = export.deserialize(bytearray(open(sys.argv[1], "rb").read()))
inputs = np.load(sys.argv[2])
image = stylize.call(inputs["content"], inputs["style"], np.float32(inputs["alpha"]))
np.save(sys.argv[3], np.asarray(image))
assert "adain_jax" not in sys.modules
"""


def _inputs(size, batch=1):
    """A content image of ``size`` and the one style image every test uses."""
    return (np.random.default_rng(size).random((batch, *size, 3), dtype=np.float32),
            np.random.default_rng(0).random((batch, *STYLE_SIZE, 3), dtype=np.float32))


def _export(weights_dir, out, fmt, *only):
    argv = ["export", "--weights", str(weights_dir), "--format", fmt, "--output", str(out)]
    return cli.main(argv + (["--only", ",".join(only)] if only else []))


@pytest.fixture(scope="module")
def stablehlo_dir(weights_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stablehlo")
    assert _export(weights_dir, out, "stablehlo") == 0
    return out


@pytest.fixture(scope="module")
def reference(random_weights):
    """(size, alpha) -> adain_jax.stylize, and the style's moments."""
    content_style = {size: _inputs(size) for size in SIZES}
    images = {(size, a): np.asarray(adain_jax.stylize(random_weights, *content_style[size], alpha=a))
              for size in SIZES for a in ALPHAS}
    moments = [np.asarray(m) for m in adain_jax.style_moments(random_weights, content_style[SIZES[0]][1])]
    return content_style, images, moments


# -- the traced functions against the library, before any export ---------------------------------

def test_export_friendly_layers_equal_the_networks_ones():
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 5, 4))

    @jax.jit
    def both(x):
        direct = jax.lax.conv_general_dilated(
            networks.reflect_pad(networks.upsample_nearest_2x(x)), kernel, (1, 1), "VALID",
            dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=jax.lax.Precision.HIGHEST)
        return ((graph.max_pool_ceil(x), graph._pad1(x, "reflect"), graph._pad1(x, "edge"),
                 graph.upsample_reflect_conv(x, kernel)),
                (networks.max_pool_ceil(x), networks.pad1(x, "reflect"), networks.pad1(x, "edge"), direct))

    for h, w in [(7, 8), (6, 9)]:  # odd and even heights and widths
        ours, library = both(jax.random.normal(jax.random.key(h), (2, h, w, 5)))
        for a, b in zip(ours[:3], library[:3]):  # pooling and padding move values: exactly equal
            np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(ours[3], library[3], atol=1e-5, rtol=1e-5)


# -- StableHLO -----------------------------------------------------------------------------------

def test_stablehlo_artifacts_equal_the_library_at_two_sizes_and_alphas(stablehlo_dir, reference):
    content_style, images, moments = reference
    style_moments = stablehlo.load(stablehlo_dir / "style_moments.stablehlo")
    transfer = stablehlo.load(stablehlo_dir / "transfer.stablehlo")
    stylize = stablehlo.load(stablehlo_dir / "stylize.stablehlo")
    mean, std = style_moments.call(content_style[SIZES[0]][1])
    np.testing.assert_allclose(mean, moments[0], atol=TOL, rtol=1e-5)
    np.testing.assert_allclose(std, moments[1], atol=TOL, rtol=1e-5)
    for size in SIZES:
        content, style = content_style[size]
        for a in ALPHAS:
            alpha = np.float32(a)
            out = np.asarray(stylize.call(content, style, alpha))
            assert out.shape == content.shape
            np.testing.assert_allclose(out, images[size, a], atol=TOL, rtol=0, err_msg=f"stylize {size} {a}")
            np.testing.assert_allclose(transfer.call(content, mean, std, alpha), images[size, a], atol=TOL, rtol=0,
                                       err_msg=f"transfer {size} {a}")


def test_stablehlo_shapes_are_symbolic_with_a_minimum_size(stablehlo_dir):
    stylize = stablehlo.load(stablehlo_dir / "stylize.stablehlo")
    assert [str(d) for d in stylize.in_avals[0].shape] == ["batch", "height", "width", "3"]
    assert [str(d) for d in stylize.out_avals[0].shape] == ["batch", "height", "width", "3"]
    assert set(stylize.platforms) >= {"cpu"}
    content, style = _inputs((graph.MIN_SIZE - 1, 40))
    with pytest.raises(ValueError, match="refining shapes"):  # the check of height >= 9
        stylize.call(content, style, np.float32(1.0))


def test_a_fresh_python_runs_the_stablehlo_artifact_without_adain_jax(stablehlo_dir, reference, tmp_path):
    content_style, images, _ = reference
    size = SIZES[1]
    np.savez(tmp_path / "in.npz", content=content_style[size][0], style=content_style[size][1], alpha=np.float32(0.5))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", FRESH_PROCESS, str(stablehlo_dir / "stylize.stablehlo"),
                           str(tmp_path / "in.npz"), str(tmp_path / "out.npy")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), images[size, 0.5], atol=TOL, rtol=0)


# -- ONNX ----------------------------------------------------------------------------------------

def _onnx_session(path):
    ort = pytest.importorskip("onnxruntime")
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _check_onnx(directory, reference, names):
    content_style, images, moments = reference
    if "style_moments" in names:
        mean, std = _onnx_session(directory / "style_moments.onnx").run(None, {"style": content_style[SIZES[0]][1]})
        np.testing.assert_allclose(mean, moments[0], atol=TOL, rtol=1e-5)
        np.testing.assert_allclose(std, moments[1], atol=TOL, rtol=1e-5)
    else:
        mean, std = moments
    sessions = {n: _onnx_session(directory / f"{n}.onnx") for n in ("transfer", "stylize") if n in names}
    for size in SIZES:
        content, style = content_style[size]
        for a in ALPHAS:
            alpha = np.asarray(a, np.float32)
            feeds = {"transfer": {"content": content, "mean": mean, "std": std, "alpha": alpha},
                     "stylize": {"content": content, "style": style, "alpha": alpha}}
            for name, session in sessions.items():
                (out,) = session.run(None, feeds[name])
                assert out.shape == content.shape
                np.testing.assert_allclose(out, images[size, a], atol=TOL, rtol=0, err_msg=f"{name} {size} {a}")


def test_onnx_style_moments_and_transfer_equal_the_library(weights_dir, reference, tmp_path):
    pytest.importorskip("jax2onnx")
    onnx = pytest.importorskip("onnx")
    from adain_jax.export import onnx as export_onnx

    assert _export(weights_dir, tmp_path, "onnx", "style_moments", "transfer") == 0
    model = onnx.load(str(tmp_path / "transfer.onnx"), load_external_data=False)
    assert {o.domain: o.version for o in model.opset_import}[""] == export_onnx.OPSET
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input]
    assert dims == [["batch", "height", "width", 3], ["batch", 512], ["batch", 512], []]
    _check_onnx(tmp_path, reference, ("style_moments", "transfer"))
    too_small = _inputs((graph.MIN_SIZE - 1, 40))[0]  # no constraint in ONNX, but a convolution refuses
    with pytest.raises(Exception, match="Invalid input shape"):
        _onnx_session(tmp_path / "style_moments.onnx").run(None, {"style": too_small})


@pytest.mark.slow
def test_onnx_stylize_equals_the_library(weights_dir, reference, tmp_path):
    pytest.importorskip("jax2onnx")
    assert _export(weights_dir, tmp_path, "onnx", "stylize") == 0
    _check_onnx(tmp_path, reference, ("stylize",))


# -- bad input: one line, non-zero status, no artifact -------------------------------------------

def _one_error_line(capsys, *fragments):
    lines = capsys.readouterr().err.strip().splitlines()
    # Every command first names the model its --weights hold (when they are readable enough to say).
    if lines and lines[0].startswith("model: "):
        lines = lines[1:]
    err = "\n".join(lines)
    assert len(lines) == 1 and err.startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, err


def test_a_missing_weights_directory_is_one_line_and_no_output(tmp_path, capsys):
    assert _export(tmp_path / "nowhere", tmp_path / "out", "stablehlo") == 2
    _one_error_line(capsys, str(tmp_path / "nowhere"))
    assert not (tmp_path / "out").exists()


def test_a_damaged_weights_directory_is_one_line_and_no_output(weights_dir, tmp_path, capsys):
    broken = tmp_path / "w"
    shutil.copytree(weights_dir, broken)
    for f in broken.rglob("*"):
        if f.is_file() and f.name != "manifest.json":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])  # cut short, as by a full disk
    assert _export(broken, tmp_path / "out", "stablehlo") == 2
    _one_error_line(capsys, str(broken))
    assert not (tmp_path / "out").exists()


def test_an_unknown_format_is_an_argument_error(weights_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _export(weights_dir, tmp_path / "out", "tflite")
    assert exit_info.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_lib.export_model({}, tmp_path / "out", "tflite")


def test_an_unwritable_output_is_one_line(weights_dir, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    assert _export(weights_dir, blocker / "out", "stablehlo") == 2
    _one_error_line(capsys, str(blocker / "out"), "cannot write")


def test_a_failure_midway_leaves_no_artifact(random_weights, tmp_path, monkeypatch):
    made = []

    def fake_export(weights, name):
        if made:
            raise OSError(28, "No space left on device")
        made.append(name)
        return b"first"

    monkeypatch.setattr(stablehlo, "export_bytes", fake_export)
    with pytest.raises(OSError):
        export_lib.export_model(random_weights, tmp_path, "stablehlo")
    assert made and list(tmp_path.iterdir()) == []

    real_replace, renamed = os.replace, []

    def failing_second_rename(src, dst):
        if renamed:
            raise OSError(5, "Input/output error")
        renamed.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(export_lib.os, "replace", failing_second_rename)
    with pytest.raises(OSError):
        export_lib.write_all({tmp_path / "a": b"a", tmp_path / "b": b"b"})
    assert renamed and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("fmt", ["stablehlo", "onnx"])
def test_a_decoder_variant_is_refused_not_exported_as_the_plain_network(fmt):
    from adain_jax.export import onnx as export_onnx
    from adain_jax.model import variants

    exporter = {"stablehlo": stablehlo.export, "onnx": export_onnx.export_proto}[fmt]
    weights = networks.init_weights(0, variants.DecoderVariant(skip="add"))
    with pytest.raises(ValueError, match=r"export supports the plain AdaIN decoder only.*skip=add"):
        exporter(weights, "stylize")
