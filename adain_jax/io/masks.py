"""Spatial-control files: a mask or label image -> the masks `adain_jax.stylize` takes.

`masks_from_file` is what every front end reads (the command line, the video command, the web app):
with two styles a binary mask (white = first style), with more a label image whose pixel values are
the style indices. Files are decoded as `adain_jax.io.images` decodes any image (EXIF orientation,
alpha over white, 16-bit scaled, one-line ImageError naming the file), then resized with NEAREST to
the content's size. The array rules (shapes, one-hot, the feature grid) are `adain_jax.controls`'.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from adain_jax.io.images import (
    SIXTEEN_BIT_MODES,
    ImageError,
    UnusableMode,
    open_converted,
    to_rgb,
)

__all__ = ["load_label_map", "load_mask", "masks_from_file"]


def _check_target_size(height: int, width: int) -> None:
    if int(height) <= 0 or int(width) <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")


def load_mask(path: str | os.PathLike, height: int, width: int) -> np.ndarray:
    """A spatial-control mask as float32 (height, width) in [0, 1].

    The file is read as open_rgb does (EXIF orientation, alpha over white, 16-bit scaled),
    converted to grey with Pillow's ``L`` (ITU-R 601-2 luma; a black/white mask stays 0/255),
    resized with NEAREST to (height, width) - the content image's size after its own
    resize/crop - and divided by 255. No thresholding: callers decide what counts as "on".
    """
    _check_target_size(height, width)
    grey = open_converted(path, lambda im: to_rgb(im).convert("L"))
    grey = grey.resize((int(width), int(height)), Image.Resampling.NEAREST)
    return np.ascontiguousarray(np.asarray(grey, dtype=np.float32) / np.float32(255.0))


def _label_values(image: Image.Image) -> Image.Image:
    """Label image -> mode I holding the raw label numbers (no colour interpretation)."""
    mode = image.mode
    if mode in ("L", "P", "1") or mode in SIXTEEN_BIT_MODES:
        # P: the palette indices are the labels, whatever colours the palette shows.
        values = np.asarray(image).astype(np.int32)
    elif mode in ("RGB", "RGBA"):
        # Accepted only when it is really grey (R == G == B), as editors often save grey
        # images as RGB; alpha is ignored.
        rgb = np.asarray(image)[:, :, :3]
        if not (np.array_equal(rgb[:, :, 0], rgb[:, :, 1]) and np.array_equal(rgb[:, :, 0], rgb[:, :, 2])):
            raise UnusableMode(
                f"a label map must be a single-channel image (mode L or P) whose pixel values are "
                f"the labels; this one is {mode} with differing R, G, B"
            )
        values = rgb[:, :, 0].astype(np.int32)
    else:
        raise UnusableMode(
            f"a label map must be a single-channel image (mode L or P) whose pixel values are "
            f"the labels; this one is mode {mode}"
        )
    return Image.fromarray(values, "I")


def load_label_map(path: str | os.PathLike, height: int, width: int, num_labels: int) -> np.ndarray:
    """A label map for K > 2 styles as int32 (height, width) with values 0..num_labels-1.

    The file must be mode L or P (P: palette indices are the labels), or 1, 16-bit grey,
    or RGB/RGBA with equal channels. EXIF orientation is applied; values are checked over
    the whole file before NEAREST resizing to (height, width). Raises ImageError listing
    the values found when any is >= num_labels.
    """
    _check_target_size(height, width)
    if int(num_labels) < 1:
        raise ValueError(f"num_labels must be >= 1, got {num_labels}")
    name = os.fspath(path)
    labels = open_converted(path, _label_values)
    values = np.asarray(labels)
    found = np.unique(values)
    bad = found[(found >= num_labels) | (found < 0)]
    if bad.size:

        def show(v: np.ndarray) -> str:
            items = [str(int(x)) for x in v[:20]]
            return ", ".join(items) + (f", ... ({v.size} in all)" if v.size > 20 else "")

        raise ImageError(
            name,
            f"label values must be 0..{num_labels - 1} for {num_labels} labels, but the image "
            f"holds {show(found)} (out of range: {show(bad)})",
        )
    labels = labels.resize((int(width), int(height)), Image.Resampling.NEAREST)
    return np.ascontiguousarray(np.asarray(labels).astype(np.int32))




def masks_from_file(path, num_styles: int, height: int, width: int) -> np.ndarray:
    """(1, H, W, K) float masks (two styles: a binary mask, white = first) or a (1, H, W) label map."""
    if num_styles == 2:
        fg = (load_mask(path, height, width) >= 0.5).astype(np.float32)
        return np.stack([fg, 1.0 - fg], axis=-1)[None]
    return load_label_map(path, height, width, num_styles)[None]
