"""Make a *normalised* VGG-19 from ImageNet weights in torchvision's layout, as the official AdaIN file is.

    python convert/normalize_vgg.py --vgg vgg19-dcbb9e9d.pth --images DIR --output weights/vgg-normalised
    python convert/normalize_vgg.py --vgg vgg19.pth --images DIR --output OUT --full-vgg   # up to relu5_4
    python -m convert.normalize_vgg ...          # the same, as a module (either form from any folder)

The official ``vgg_normalised.pth`` is Gatys et al.'s rescaled VGG-19 (the ``vgg-normalize`` procedure the
MVA study, section 2.3.1, cites): every convolution filter is scaled so that its mean ReLU activation over
a set of images (and over positions) is 1, which makes losses taken at different layers comparable. This
command repeats that procedure on torchvision's ``vgg19`` weights (``features.N.weight`` / ``.bias``, an
OrderedDict saved by ``torch.save``), read with the torch-free `convert.pth_reader`:

1. the original network runs on the images (RGB in [0, 1], normalised with the ImageNet mean/std as
   torchvision expects, ``--size`` px centre crops) in float64 numpy, with the reflection padding and
   ceil-mode pooling of adain-jax's encoder, and the mean activation ``m_l[o]`` of every filter is
   accumulated over all images and positions;
2. bottom up, filter ``o`` of layer ``l`` becomes ``W'_l[o, i] = W_l[o, i] * m_{l-1}[i] / m_l[o]`` and
   ``b'_l[o] = b_l[o] / m_l[o]`` (``m_0 = 1``). ReLU and max-pooling commute with a positive
   per-channel scale, so every layer's output is the original's divided by ``m_l``: its mean over the
   same images is exactly 1. A filter that is never active on the images (``m = 0``) keeps its scale;
3. the input preprocessing is folded into the first 1x1 convolution ``conv0`` (the official file's
   conv0 maps RGB [0, 1] to mean-subtracted BGR [0, 255]; here it maps RGB [0, 1] to
   ``(x - mean) / std`` in RGB order, what torchvision's conv1_1 expects), so the result runs in
   adain-jax's encoder unchanged.

The output is a weights directory (`adain_jax.io.weights.save_weights`): the encoder up to relu4_1
(``--full-vgg``: to relu5_4) and, because a weights directory always holds a decoder, a *random,
untrained* decoder (`adain_jax.model.networks.init_weights`), which the manifest says. Use it as
``--config.vgg=OUT`` to train a decoder (training starts its decoder from scratch by default). A bad
input (unreadable or truncated file, a missing or mis-shaped tensor, an empty image folder, an
unreadable image) gives one ``error:`` line, exit status 1 and no output directory.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import sys
from typing import Mapping, Sequence

if not __package__:
    # Run as a script (`python convert/normalize_vgg.py`, the design card's form), Python puts convert/ first
    # on sys.path; the checkout's root must be there instead so that `convert` and `adain_jax` import.
    sys.path[0] = str(pathlib.Path(__file__).resolve().parents[1])

import numpy as np  # noqa: E402

from adain_jax.model import architecture
from convert.pth_reader import WeightFileError, read_state_dict

# ImageNet statistics of torchvision's VGG preprocessing (transforms.Normalize).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Caffe's VGG preprocessing (Keras's ``preprocess_input`` "caffe" mode): BGR in [0, 255] minus this mean.
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
DEFAULT_SIZE = 256
# torchvision ``vgg19().features`` indices of the convolutions, in the order of the layer table.
TORCHVISION_INDEX = {
    "conv1_1": 0, "conv1_2": 2, "conv2_1": 5, "conv2_2": 7, "conv3_1": 10, "conv3_2": 12, "conv3_3": 14,
    "conv3_4": 16, "conv4_1": 19, "conv4_2": 21, "conv4_3": 23, "conv4_4": 25, "conv5_1": 28, "conv5_2": 30,
    "conv5_3": 32, "conv5_4": 34,
}
VGG_LAYERS: tuple[architecture.ConvSpec, ...] = architecture.ENCODER[1:] + architecture.VGG_TAIL


class NormalizeError(ValueError):
    """A bad input; the message is one line naming the file and the problem."""


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What an ImageNet VGG expects of an RGB [0, 1] image: network channel ``c`` is
    ``(rgb[..., order[c]] * scale - mean[c]) / std[c]``. It is affine per channel, so it folds exactly
    into the encoder's 1x1 ``conv0``, and the reflection padding after it pads the folded values alike."""

    name: str
    order: tuple[int, int, int]
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """The network input of an RGB [0, 1] image, in float64."""
        x = np.asarray(rgb, np.float64)[..., list(self.order)] * self.scale
        return (x - np.asarray(self.mean)) / np.asarray(self.std)

    def conv0(self) -> dict[str, np.ndarray]:
        """The 1x1 ``conv0`` (HWIO) computing `apply`: output channel ``c`` reads input ``order[c]``."""
        kernel = np.zeros((1, 1, 3, 3))
        for c, i in enumerate(self.order):
            kernel[0, 0, i, c] = self.scale / self.std[c]
        return {"kernel": kernel, "bias": -np.asarray(self.mean) / np.asarray(self.std)}


# torchvision's vgg19: RGB, (x - mean) / std.
TORCHVISION = Preprocessing("torchvision", (0, 1, 2), 1.0, IMAGENET_MEAN, IMAGENET_STD)
# Caffe's (and Keras's) VGG-19 and the official vgg_normalised.pth: BGR in [0, 255] minus the mean.
CAFFE = Preprocessing("caffe", (2, 1, 0), 255.0, CAFFE_BGR_MEAN, (1.0, 1.0, 1.0))


# --------------------------------------------------------------------------------------------------
# torchvision's layout -> float64 HWIO layers.
# --------------------------------------------------------------------------------------------------


def layers_from_torchvision(path, state: Mapping[str, np.ndarray], specs: Sequence[architecture.ConvSpec]) -> dict:
    """``{name: {"kernel": HWIO float64, "bias": float64}}`` of ``specs`` from a torchvision state dict."""
    features = [k for k in state if k.startswith("features.")]
    if not features:
        hint = ("; it looks like the official normalised VGG (convert it with `python -m convert.vgg_to_flax`)"
                if "0.weight" in state else "")
        raise NormalizeError(f"{path}: no features.N.weight tensors: not torchvision's VGG-19 layout{hint}")
    known = {f"features.{TORCHVISION_INDEX[s.name]}.{p}" for s in VGG_LAYERS for p in ("weight", "bias")}
    for key in state:
        if not (key in known or key.startswith("classifier.")):
            raise NormalizeError(f"{path}: {key}: not in torchvision's VGG-19 layout (is this VGG-19?)")
    out = {}
    for spec in specs:
        layer = {}
        for suffix, shape in (("weight", spec.torch_weight_shape), ("bias", (spec.out_channels,))):
            key = f"features.{TORCHVISION_INDEX[spec.name]}.{suffix}"
            if key not in state:
                raise NormalizeError(f"{path}: {key}: missing (the {suffix} of {spec.name}, shape {shape})")
            value = state[key]
            if tuple(value.shape) != shape:
                raise NormalizeError(f"{path}: {key}: shape {tuple(value.shape)}, expected {shape} ({spec.name})")
            if not np.issubdtype(value.dtype, np.floating):
                raise NormalizeError(f"{path}: {key}: dtype {value.dtype}, expected a float tensor")
            if not np.all(np.isfinite(value)):
                raise NormalizeError(f"{path}: {key}: contains NaN or infinite values")
            layer[suffix] = np.asarray(value, np.float64)
        out[spec.name] = {"kernel": layer["weight"].transpose(2, 3, 1, 0), "bias": layer["bias"]}
    return out


# --------------------------------------------------------------------------------------------------
# The network in float64 numpy: adain-jax's encoder (reflection padding, ceil-mode pooling).
# --------------------------------------------------------------------------------------------------


_BLOCK_BYTES = 64 << 20  # bound on the im2col buffer of one block of rows


def conv3x3(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Reflection-padded 3x3 convolution of one HxWxC image: im2col + one matrix product per block of rows."""
    h, w, c = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)), mode="reflect")
    k = kernel.reshape(9 * c, -1)  # HWIO -> (dy, dx, c) rows, the order of the columns below
    out = np.empty((h, w, k.shape[1]))
    rows = max(1, _BLOCK_BYTES // (w * 9 * c * 8))
    for r in range(0, h, rows):
        n = min(rows, h - r)
        cols = np.concatenate([xp[r + dy:r + dy + n, dx:dx + w] for dy in range(3) for dx in range(3)], axis=-1)
        out[r:r + n] = (cols.reshape(n * w, 9 * c) @ k).reshape(n, w, -1)
    return out + bias


def max_pool_ceil(x: np.ndarray) -> np.ndarray:
    h, w, _ = x.shape
    x = np.pad(x, ((0, h % 2), (0, w % 2), (0, 0)), constant_values=-np.inf)
    return np.maximum(np.maximum(x[0::2, 0::2], x[0::2, 1::2]), np.maximum(x[1::2, 0::2], x[1::2, 1::2]))


def forward(layers: Mapping[str, dict], specs: Sequence[architecture.ConvSpec], x: np.ndarray) -> dict[str, np.ndarray]:
    """ReLU outputs ``{"relu1_1": HxWxC, ...}`` of the conv layers ``specs`` on the network input ``x``."""
    out = {}
    for spec in specs:
        x = np.maximum(conv3x3(x, layers[spec.name]["kernel"], layers[spec.name]["bias"]), 0.0)
        out["relu" + spec.name[len("conv"):]] = x
        if spec.pool_after:
            x = max_pool_ceil(x)
    return out


def mean_activations(layers, specs, images, preprocessing: Preprocessing = TORCHVISION) -> dict[str, np.ndarray]:
    """Mean ReLU output of every filter over all images and positions -> ``{conv name: (O,)}``, float64."""
    from tqdm import tqdm

    sums = {s.name: np.zeros(s.out_channels) for s in specs}
    counts = dict.fromkeys(sums, 0)
    for image in tqdm(images, desc="mean activations", unit="image", file=sys.stderr, disable=None):
        feats = forward(layers, specs, preprocessing.apply(image))
        for spec in specs:
            f = feats["relu" + spec.name[len("conv"):]]
            sums[spec.name] += f.sum(axis=(0, 1))
            counts[spec.name] += f.shape[0] * f.shape[1]
    return {name: sums[name] / counts[name] for name in sums}


# --------------------------------------------------------------------------------------------------
# The rescaling and the folded preprocessing.
# --------------------------------------------------------------------------------------------------


def rescale(layers, specs, means: Mapping[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """Bottom-up normalisation -> (normalised layers, per-filter scales); dead filters (mean 0) keep scale 1."""
    out, scales = {}, {}
    previous = np.ones(specs[0].in_channels)
    for spec in specs:
        scale = np.where(means[spec.name] > 0, means[spec.name], 1.0)
        kernel = layers[spec.name]["kernel"] * previous[None, None, :, None] / scale
        out[spec.name] = {"kernel": kernel, "bias": layers[spec.name]["bias"] / scale}
        scales[spec.name] = scale
        previous = scale
    return out, scales


def normalize(layers, specs, images, preprocessing: Preprocessing = TORCHVISION) -> tuple[dict, dict]:
    """``(encoder params incl. conv0, float64; {"factors": per-filter scales, "dead_filters": counts})``.

    Layer ``l`` of the result outputs the original's ReLU output divided by ``factors[l]``; ``conv0``
    folds ``preprocessing`` (what the original network expects of its input).
    """
    means = mean_activations(layers, specs, images, preprocessing)
    scaled, factors = rescale(layers, specs, means)
    dead = {name: int(np.sum(m <= 0)) for name, m in means.items() if np.any(m <= 0)}
    return {"conv0": preprocessing.conv0(), **scaled}, {"factors": factors, "dead_filters": dead}


# --------------------------------------------------------------------------------------------------
# Files.
# --------------------------------------------------------------------------------------------------


def load_images(directory, size: int) -> tuple[list[str], list[np.ndarray]]:
    """Every image directly in ``directory`` -> (file names, ``size`` x ``size`` centre crops, RGB [0, 1])."""
    from adain_jax.io import images as image_io

    try:
        paths = image_io.list_images(directory)
        return [p.name for p in paths], [image_io.load_image(p, size, crop=True) for p in paths]
    except image_io.FileError as e:
        raise NormalizeError(" ".join(str(e).split())) from None


def normalise_on_folder(layers, images_dir, *, full_vgg: bool, size: int,
                        preprocessing: Preprocessing) -> tuple[dict, dict]:
    """Normalise ``layers`` (float64 HWIO, as `layers_from_torchvision` gives) on the images of a folder ->
    ``(float64 encoder params, statistics incl. the image file names)`` (see `normalize`)."""
    if size < 16:
        raise NormalizeError(f"--size must be at least 16 pixels (relu5_4 needs 2x2 maps), got {size}")
    specs = VGG_LAYERS if full_vgg else architecture.ENCODER[1:]
    names, images = load_images(images_dir, size)
    encoder, stats = normalize({s.name: layers[s.name] for s in specs}, specs, images, preprocessing)
    return encoder, {**stats, "num_images": len(images), "image_files": names, "size": size, "full_vgg": full_vgg}


def measure(vgg_path, images_dir, *, full_vgg: bool = False, size: int = DEFAULT_SIZE) -> tuple[dict, dict]:
    """Read torchvision weights and the images and normalise -> ``(float64 encoder params, statistics)``."""
    specs = VGG_LAYERS if full_vgg else architecture.ENCODER[1:]
    layers = layers_from_torchvision(vgg_path, read_state_dict(vgg_path), specs)
    return normalise_on_folder(layers, images_dir, full_vgg=full_vgg, size=size, preprocessing=TORCHVISION)


def write(encoder: Mapping[str, dict], stats: Mapping, vgg_path, images_dir, output, *, seed: int = 0,
          source: Mapping | None = None, converted_by: str = "convert/normalize_vgg.py",
          origin: str = "torchvision weights") -> pathlib.Path:
    """The weights directory ``output`` (atomically): the encoder in float32 and a random decoder.

    ``source`` is the manifest's record of the VGG file (default: `vgg_to_flax.source_record`).
    """
    from adain_jax.io import weights as weights_lib
    from adain_jax.model import networks
    from convert.vgg_to_flax import source_record

    manifest = {
        "sources": {"vgg": dict(source) if source is not None else source_record(vgg_path)},
        "full_vgg": stats["full_vgg"], "converted_by": converted_by,
        "normalisation": {"images": str(images_dir), "num_images": stats["num_images"], "size": stats["size"],
                          "mean_activation": 1.0, "dead_filters": stats["dead_filters"],
                          **({"image_files": stats["image_files"]} if "image_files" in stats else {})},
        "decoder": f"random (networks.init_weights seed {seed}), untrained: train one with --config.vgg",
        "note": f"VGG-19 normalised from {origin}; decoder random",
    }
    weights = {"encoder": {k: {p: np.asarray(v, np.float32) for p, v in layer.items()} for k, layer in encoder.items()},
               "decoder": networks.init_weights(seed)["decoder"]}
    return weights_lib.save_weights(weights, output, manifest)


def run(vgg_path, images_dir, output, *, full_vgg: bool = False, size: int = DEFAULT_SIZE,
        seed: int = 0) -> pathlib.Path:
    """The whole command: `measure`, then `write`; NormalizeError/WeightFileError for bad inputs."""
    encoder, stats = measure(vgg_path, images_dir, full_vgg=full_vgg, size=size)
    return write(encoder, stats, vgg_path, images_dir, output, seed=seed)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convert.normalize_vgg",
        description="Rescale ImageNet VGG-19 weights (torchvision layout) so that every filter's mean activation "
                    "over a folder of images is 1, as the official vgg_normalised.pth, and write an adain-jax "
                    "weights directory (the decoder in it is random). torch is not needed.")
    parser.add_argument("--vgg", type=pathlib.Path, required=True,
                        help="torchvision VGG-19 state dict (features.N.weight/bias), e.g. vgg19-dcbb9e9d.pth")
    parser.add_argument("--images", type=pathlib.Path, required=True,
                        help="folder of images to measure the mean activations on")
    parser.add_argument("--output", type=pathlib.Path, required=True, help="output weights directory")
    parser.add_argument("--full-vgg", action="store_true", help="normalise and keep the layers up to relu5_4")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE,
                        help=f"images are resized (shorter side) and centre-cropped to this size (default {DEFAULT_SIZE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random decoder written beside the encoder")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        out = run(args.vgg, args.images, args.output, full_vgg=args.full_vgg, size=args.size, seed=args.seed)
    except (WeightFileError, NormalizeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (normalised encoder, random decoder): train with --config.vgg={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
