"""convert/normalize_vgg.py on random weights in torchvision's VGG-19 layout, checked against torch in float64."""

from __future__ import annotations

import collections
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, SHARED, write_image
from convert import normalize_vgg

SIZE = 32  # 2x2 maps at relu5_x: the smallest that reflection padding allows
TV_CONVS = [(0, 3, 64), (2, 64, 64), (5, 64, 128), (7, 128, 128), (10, 128, 256), (12, 256, 256), (14, 256, 256),
            (16, 256, 256), (19, 256, 512), (21, 512, 512), (23, 512, 512), (25, 512, 512), (28, 512, 512),
            (30, 512, 512), (32, 512, 512), (34, 512, 512)]
POOL_AFTER = {2, 7, 16, 25, 34}


def torchvision_state_dict(seed=0) -> collections.OrderedDict:
    """torchvision's vgg19 initialisation (kaiming normal, fan_out) with random biases, so biases matter."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for index, cin, cout in TV_CONVS:
        std = (2.0 / (cout * 9)) ** 0.5
        sd[f"features.{index}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
        sd[f"features.{index}.bias"] = torch.randn(cout, generator=g) * 0.05
    sd["classifier.6.weight"] = torch.randn(10, 7, generator=g)  # the classifier is ignored (a small stand-in)
    sd["classifier.6.bias"] = torch.randn(10, generator=g)
    return sd


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import torch

    root = tmp_path_factory.mktemp("nv")
    sd = torchvision_state_dict()
    torch.save(sd, root / "vgg19.pth")
    for i in range(4):
        write_image(root / "images" / f"im{i}.png", 40 + 4 * i, 48, seed=10 + i)
    return root, sd


@pytest.fixture(scope="module")
def float64_result(files):
    root, _ = files
    return normalize_vgg.measure(root / "vgg19.pth", root / "images", full_vgg=True, size=SIZE)


@pytest.fixture(scope="module")
def normalised(files, float64_result):
    root, _ = files
    return normalize_vgg.write(*float64_result, root / "vgg19.pth", root / "images", root / "out")


def torch_features(convs: dict, x, conv0=None) -> dict:
    """Independent reference: the VGG in torch float64 with reflection padding and ceil-mode pooling.

    ``convs`` maps torchvision index -> (weight OIHW, bias); ``x`` is (N, 3, H, W) already preprocessed
    unless ``conv0`` (a 1x1 weight, bias) maps it first.
    """
    import torch.nn.functional as F

    if conv0 is not None:
        x = F.conv2d(x, *conv0)
    out = {}
    for index, _, _ in TV_CONVS:
        x = F.relu(F.conv2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), *convs[index]))
        out[index] = x
        if index in POOL_AFTER:
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
    return out


def load_images(root):
    from adain_jax.io import images as image_io

    return np.stack([image_io.load_image(p, SIZE, crop=True) for p in image_io.list_images(root / "images")])


def as_torch(encoder):
    """Encoder params (HWIO) as torch float64 OIHW convs keyed by torchvision index, and conv0."""
    import torch

    def conv(name):
        return (torch.from_numpy(np.asarray(encoder[name]["kernel"], np.float64)).permute(3, 2, 0, 1),
                torch.from_numpy(np.asarray(encoder[name]["bias"], np.float64)))

    return {normalize_vgg.TORCHVISION_INDEX[s.name]: conv(s.name) for s in normalize_vgg.VGG_LAYERS}, conv("conv0")


def test_every_filter_has_mean_activation_one_and_layers_are_rescaled(files, float64_result):
    """Torch float64, independent of the numpy forward pass: means 1 and outputs = original / factor.

    Everything is float64, so the only error is rounding over 16 layers: relative 1e-9 is 10^6 ulps of slack
    yet far below any real mis-scaling (a wrong factor is off by O(1)).
    """
    import torch

    root, sd = files
    encoder, stats = float64_result
    images = torch.from_numpy(load_images(root).astype(np.float64)).permute(0, 3, 1, 2)
    mean = torch.tensor(normalize_vgg.IMAGENET_MEAN, dtype=torch.float64)[None, :, None, None]
    std = torch.tensor(normalize_vgg.IMAGENET_STD, dtype=torch.float64)[None, :, None, None]
    original = torch_features({i: (sd[f"features.{i}.weight"].double(), sd[f"features.{i}.bias"].double())
                               for i, _, _ in TV_CONVS}, (images - mean) / std)
    convs, conv0 = as_torch(encoder)
    renormed = torch_features(convs, images, conv0=conv0)  # conv0 folds the preprocessing: raw [0, 1] input
    names = {v: k for k, v in normalize_vgg.TORCHVISION_INDEX.items()}
    for i, _, cout in TV_CONVS:
        o, n = original[i].numpy(), renormed[i].numpy()
        live = o.mean(axis=(0, 2, 3)) > 0
        assert live.sum() > cout // 2, i  # the random network is not mostly dead: the test can see scaling
        assert int((~live).sum()) == stats["dead_filters"].get(names[i], 0)
        np.testing.assert_allclose(n.mean(axis=(0, 2, 3))[live], 1.0, rtol=1e-9, err_msg=f"features.{i}")
        # Output = original / per-channel factor: the factor is the original's mean, the same at every position.
        factor = o.mean(axis=(0, 2, 3))[live]
        np.testing.assert_allclose(n[:, live] * factor[None, :, None, None], o[:, live],
                                   rtol=1e-9, atol=1e-12 * float(np.abs(o).max()), err_msg=f"features.{i}")
        np.testing.assert_array_equal(n[:, ~live], 0.0)


def test_written_file_is_the_float64_result_in_float32(float64_result, normalised):
    encoder, _ = float64_result
    with np.load(normalised / "weights.npz") as npz:
        for name, layer in encoder.items():
            for part, value in layer.items():
                np.testing.assert_array_equal(npz[f"encoder/{name}/{part}"], np.asarray(value, np.float32))


def test_output_runs_in_our_encoder_and_loads_as_training_vgg(files, float64_result, normalised):
    """Our float32 JAX encoder on [0, 1] images gives the float64 normalised network's features.

    The float32 error is that of the original network (float32 weights and convolutions, fan-in <= 2304,
    ~1e-6 of the layer's largest activation) divided by each filter's factor, so compare in the original's
    units (times the factor) at 1e-4 of the layer's largest original activation: ~100x the float32 error,
    while a mis-scaled or BGR-swapped input would be off by O(1). (A filter active at a single position has
    a tiny factor: in the normalised units its rounding error is amplified, as it is in the official file.)
    """
    import torch

    import adain_jax
    from adain_jax.io import weights as weights_lib
    from adain_jax.model import networks

    root, _ = files
    images = load_images(root)
    weights = adain_jax.load_weights(normalised)
    feats = networks.encode(weights["encoder"], images)
    convs, conv0 = as_torch(float64_result[0])
    reference = torch_features(convs, torch.from_numpy(images.astype(np.float64)).permute(0, 3, 1, 2), conv0=conv0)
    for name, f in feats.items():
        expected = reference[normalize_vgg.TORCHVISION_INDEX["conv" + name[len("relu"):]]].numpy().transpose(0, 2, 3, 1)
        factor = float64_result[1]["factors"]["conv" + name[len("relu"):]]
        original = expected * factor
        np.testing.assert_allclose(np.asarray(f, np.float64) * factor, original, rtol=0,
                                   atol=1e-4 * float(np.abs(original).max()), err_msg=name)
    manifest = weights_lib.read_manifest(normalised)
    assert manifest["full_vgg"] and "random" in manifest["decoder"]
    assert manifest["normalisation"]["num_images"] == 4
    with np.load(normalised / "weights.npz") as npz:
        assert "encoder/conv5_4/kernel" in npz.files


def test_cli_bad_inputs_give_one_line_and_no_output(files, tmp_path, capsys):
    import torch

    root, sd = files
    out = tmp_path / "out"
    cases = {}
    missing = collections.OrderedDict(sd)
    del missing["features.19.bias"]
    torch.save(missing, tmp_path / "missing.pth")
    cases["missing"] = (["--vgg", tmp_path / "missing.pth", "--images", root / "images"], "features.19.bias: missing")
    shaped = collections.OrderedDict(sd)
    shaped["features.5.weight"] = torch.zeros(128, 32, 3, 3)
    torch.save(shaped, tmp_path / "shaped.pth")
    cases["shape"] = (["--vgg", tmp_path / "shaped.pth", "--images", root / "images"], "features.5.weight: shape")
    (tmp_path / "empty").mkdir()
    cases["empty"] = (["--vgg", root / "vgg19.pth", "--images", tmp_path / "empty"], "no image files")
    truncated = SHARED / "weights" / "fixtures" / "vgg_normalised.truncated.pth"
    cases["truncated"] = (["--vgg", truncated, "--images", root / "images"], "vgg_normalised.truncated.pth")
    official = collections.OrderedDict((f"{i}.weight", torch.zeros(1)) for i in (0, 2))
    torch.save(official, tmp_path / "official.pth")
    cases["official"] = (["--vgg", tmp_path / "official.pth", "--images", root / "images"], "convert.vgg_to_flax")
    for name, (args, expected) in cases.items():
        if name == "truncated" and not truncated.exists():
            continue
        status = normalize_vgg.main([str(a) for a in args] + ["--output", str(out), "--size", str(SIZE)])
        err = capsys.readouterr().err
        assert status == 1, name
        assert err.startswith("error: ") and err.count("\n") == 1 and expected in err, (name, err)
        assert not out.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir()), name


def test_encoder_only_output(files, tmp_path, capsys):
    root, _ = files
    status = normalize_vgg.main(["--vgg", str(root / "vgg19.pth"), "--images", str(root / "images"),
                                 "--output", str(tmp_path / "enc"), "--size", str(SIZE)])
    assert status == 0, capsys.readouterr().err
    with np.load(tmp_path / "enc" / "weights.npz") as npz:
        assert "encoder/conv4_1/kernel" in npz.files and "encoder/conv4_2/kernel" not in npz.files


@pytest.mark.parametrize("where", ["root", "elsewhere"])
def test_runs_as_the_design_cards_script_from_any_folder(files, tmp_path, where):
    root, _ = files
    script = "convert/normalize_vgg.py" if where == "root" else str(ROOT / "convert" / "normalize_vgg.py")
    proc = subprocess.run([sys.executable, script, "--vgg", str(root / "vgg19.pth"), "--images", str(root / "images"),
                           "--output", str(tmp_path / "enc"), "--size", str(SIZE)],
                          cwd=ROOT if where == "root" else tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    with np.load(tmp_path / "enc" / "weights.npz") as npz:
        assert "encoder/conv4_1/kernel" in npz.files and "encoder/conv4_2/kernel" not in npz.files
