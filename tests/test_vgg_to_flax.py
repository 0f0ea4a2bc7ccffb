"""convert/vgg_to_flax.py: official-layout files in both serialisations, every bad input, --download."""

import functools
import http.server
import pathlib
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import adain_jax
from adain_jax.model import architecture
from convert import vgg_to_flax

from helpers import ROOT, SHARED

torch = pytest.importorskip("torch")
import torch_reference  # noqa: E402  (after the skip: it imports torch)

SHARED_FIXTURE = SHARED / "weights" / "fixtures" / "vgg_normalised.truncated.pth"


@pytest.fixture(scope="module")
def official_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("official")
    return {fmt: torch_reference.save_official_files(root / fmt, seed=3, legacy=(fmt == "legacy"))
            for fmt in ("legacy", "zip")}


def leftovers(parent: pathlib.Path, name: str):
    return [p.name for p in parent.iterdir() if name in p.name]


@pytest.mark.parametrize("fmt", ["legacy", "zip"])
def test_converted_weights_equal_the_state_dicts_transposed_to_hwio(official_files, tmp_path, fmt):
    vgg, dec = official_files[fmt]
    assert vgg_to_flax.main(["--vgg", str(vgg), "--decoder", str(dec), "--out", str(tmp_path / "w")]) == 0
    weights = adain_jax.load_weights(tmp_path / "w")
    vgg_sd, dec_sd = torch.load(vgg), torch.load(dec)
    for net, specs, sd in (("encoder", architecture.ENCODER, vgg_sd), ("decoder", architecture.DECODER, dec_sd)):
        assert sorted(weights[net]) == sorted(s.name for s in specs)
        for s in specs:
            kernel = sd[f"{s.torch_index}.weight"].numpy().transpose(2, 3, 1, 0)
            np.testing.assert_array_equal(np.asarray(weights[net][s.name]["kernel"]), kernel)
            np.testing.assert_array_equal(np.asarray(weights[net][s.name]["bias"]), sd[f"{s.torch_index}.bias"].numpy())
    manifest = adain_jax.io.weights.read_manifest(tmp_path / "w")
    assert manifest["sources"]["vgg"]["git_blob_id"] == vgg_to_flax.git_blob_id(vgg)
    assert manifest["sources"]["vgg"]["official"] is False  # random tensors are not the release files
    assert manifest["shapes"]["encoder/conv4_1/kernel"] == "3x3x256x512"


def test_full_vgg_keeps_the_tail_but_loading_returns_the_encoder_to_relu4_1(official_files, tmp_path):
    vgg, dec = official_files["zip"]
    vgg_to_flax.convert(vgg, dec, tmp_path / "w", full_vgg=True)
    manifest = adain_jax.io.weights.read_manifest(tmp_path / "w")
    assert manifest["full_vgg"] and "encoder/conv5_4/kernel" in manifest["shapes"]
    assert sorted(adain_jax.load_weights(tmp_path / "w")["encoder"]) == sorted(s.name for s in architecture.ENCODER)


def test_git_blob_id_is_what_git_hash_object_prints(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"adain" * 1000)
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    expected = subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()
    assert vgg_to_flax.git_blob_id(path) == expected


def _save(path, tensors, legacy=True):
    torch.save(tensors, path, _use_new_zipfile_serialization=not legacy)
    return path


def bad_vgg_files(tmp: pathlib.Path):
    """(name, path, expected message fragment, tensor named in the message) for each bad VGG input."""
    good0 = {"0.weight": torch.randn(3, 3, 1, 1), "0.bias": torch.randn(3)}
    cases = [
        ("truncated official copy", SHARED_FIXTURE, "truncated", ".weight"),
        ("float64", _save(tmp / "f64.pth", {**good0, "0.weight": torch.randn(3, 3, 1, 1, dtype=torch.float64)}),
         "dtype float64, expected float32", "0.weight"),
        ("wrong shape", _save(tmp / "shape.pth", {**good0, "0.weight": torch.randn(3, 3, 3, 3)}, legacy=False),
         "shape (3, 3, 3, 3), expected (3, 3, 1, 1)", "0.weight"),
        ("missing layer", _save(tmp / "missing.pth", good0), "missing", "2.weight"),
        ("foreign key", _save(tmp / "foreign.pth", {**good0, "features.0.weight": torch.randn(2)}),
         "not in the official layout", "features.0.weight"),
        ("nan", _save(tmp / "nan.pth", {**good0, "0.bias": torch.tensor([0.0, float("nan"), 1.0])}),
         "NaN", "0.bias"),
        ("not a torch file", tmp / "noise.pth", "", None),
        ("missing file", tmp / "does-not-exist.pth", "", None),
    ]
    (tmp / "noise.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    return cases


def test_every_bad_input_gets_one_clear_line_exit_1_and_no_output(official_files, tmp_path, capsys):
    _, dec = official_files["legacy"]
    for name, vgg, fragment, tensor in bad_vgg_files(tmp_path):
        out = tmp_path / f"out-{name.replace(' ', '_')}"
        status = vgg_to_flax.main(["--vgg", str(vgg), "--decoder", str(dec), "--out", str(out)])
        err = capsys.readouterr().err.strip()
        assert status == 1, name
        assert err.startswith("error: ") and len(err.splitlines()) == 1, (name, err)
        assert str(vgg) in err and fragment in err, (name, err)
        if tensor:
            assert tensor in err, (name, err)
        assert not out.exists() and leftovers(tmp_path, out.name) == [], name


def test_swapped_files_are_recognised(official_files, tmp_path, capsys):
    vgg, dec = official_files["zip"]
    assert vgg_to_flax.main(["--vgg", str(dec), "--decoder", str(vgg), "--out", str(tmp_path / "w")]) == 1
    assert "swapped" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_existing_output_survives_a_failed_conversion(official_files, tmp_path):
    vgg, dec = official_files["zip"]
    vgg_to_flax.convert(vgg, dec, tmp_path / "w")
    before = adain_jax.io.weights.read_manifest(tmp_path / "w")
    assert vgg_to_flax.main(["--vgg", str(SHARED_FIXTURE), "--decoder", str(dec), "--out", str(tmp_path / "w")]) == 1
    assert adain_jax.io.weights.read_manifest(tmp_path / "w") == before


@pytest.fixture
def release_server(official_files, tmp_path):
    """A local HTTP server on 127.0.0.1 playing the release page, serving the generated files."""
    root = tmp_path / "release"
    root.mkdir()
    for src in official_files["legacy"]:
        shutil.copy(src, root / pathlib.Path(src).name)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


def test_download_fetches_verifies_and_converts(release_server, tmp_path, monkeypatch):
    url, root = release_server
    # The real blob ids belong to the official files, which cannot be fetched here: serve our own
    # files and expect *their* ids, so the verification path is the one users run.
    monkeypatch.setattr(vgg_to_flax, "OFFICIAL_BLOB_IDS", {n: vgg_to_flax.git_blob_id(root / n) for n in
                                                            ("vgg_normalised.pth", "decoder.pth")})
    args = ["--download", "--base-url", url, "--download-dir", str(tmp_path / "dl"), "--out", str(tmp_path / "w")]
    assert vgg_to_flax.main(args) == 0
    assert sorted(p.name for p in (tmp_path / "dl").iterdir()) == ["decoder.pth", "vgg_normalised.pth"]
    assert adain_jax.io.weights.read_manifest(tmp_path / "w")["sources"]["decoder"]["official"] is True


def test_download_with_a_wrong_blob_id_keeps_nothing(release_server, tmp_path, capsys):
    url, _ = release_server
    args = ["--download", "--base-url", url, "--download-dir", str(tmp_path / "dl"), "--out", str(tmp_path / "w")]
    assert vgg_to_flax.main(args) == 1
    err = capsys.readouterr().err
    assert "git blob id" in err and vgg_to_flax.OFFICIAL_BLOB_IDS["vgg_normalised.pth"] in err
    assert list((tmp_path / "dl").iterdir()) == [] and not (tmp_path / "w").exists()


def test_download_without_network_fails_fast_and_says_where_to_put_the_files(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port with nothing listening: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    args = ["--download", "--base-url", f"http://127.0.0.1:{port}", "--download-dir", str(tmp_path / "dl"),
            "--out", str(tmp_path / "w")]
    assert vgg_to_flax.main(args) == 1
    assert time.monotonic() - start < 5
    err = capsys.readouterr().err
    assert "by hand" in err and str(tmp_path / "dl") in err and vgg_to_flax.RELEASE_URL in err
    assert not (tmp_path / "w").exists()


# The design card's script form and the module form, each from the repository root and from another folder.
ENTRY_POINTS = {
    "script-from-root": (["convert/vgg_to_flax.py"], "root"),
    "script-from-elsewhere": ([str(ROOT / "convert" / "vgg_to_flax.py")], "tmp"),
    "module-from-root": (["-m", "convert.vgg_to_flax"], "root"),
    "module-from-elsewhere": (["-m", "convert.vgg_to_flax"], "tmp"),
}


@pytest.mark.parametrize("form", ENTRY_POINTS)
def test_every_invocation_form_converts(official_files, tmp_path, form):
    vgg, dec = official_files["legacy"]
    command, where = ENTRY_POINTS[form]
    cwd = ROOT if where == "root" else tmp_path
    out = tmp_path / "converted" / "w"
    proc = subprocess.run([sys.executable, *command, "--vgg", str(vgg), "--decoder", str(dec), "--out", str(out)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    weights = adain_jax.load_weights(out)
    expected = torch.load(dec, weights_only=True)["28.weight"].numpy().transpose(2, 3, 1, 0)
    np.testing.assert_array_equal(np.asarray(weights["decoder"]["conv1_1"]["kernel"]), expected)


