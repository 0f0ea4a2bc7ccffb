"""The model packaged with adain-jax, so that a plain clone or install stylizes for real with no download.

``DIRECTORY`` is a weights directory (`adain_jax.io.weights`): ``weights.npz`` in float16 (the encoder
up to relu4_1 and the decoder, about 14 MB), ``manifest.json`` (``"packaged"``: name, summary, the VGG
file's md5 and licence, the normalisation images, the data manifest's hash, steps and final losses) and
``SOURCES.md`` (licences and attribution of everything it was made from). The encoder is Keras's
ImageNet VGG-19 (the Caffe weights the official ``vgg_normalised.pth`` was made from) normalised by
`convert.keras_vgg`; the decoder was trained by ``train.main`` with ``train/configs/packaged.py`` on a
2-core CPU (docs/real_model.md). It is the fallback of `adain_jax.cli.options.default_weights`, after
``$ADAIN_JAX_WEIGHTS`` and the official files in ``weights/flax``, which remain the better model.
"""

from __future__ import annotations

import pathlib

DIRECTORY = pathlib.Path(__file__).resolve().parent


def available() -> bool:
    """Whether the packaged weights are installed (a checkout without its large files lacks them)."""
    return (DIRECTORY / "weights.npz").is_file() and (DIRECTORY / "manifest.json").is_file()
