"""Files in, stylized arrays out: the runner behind every front end (the CLI's stylize and demo).

`Stylizer` loads images with the port's test-time transform, caches each style image and its
relu4_1 statistics (a style is encoded once for all contents), and calls the jitted `stylize`
functions; `masks_from_file` turns a mask or label image into the masks `stylize` takes. Front
ends parse their own arguments and decide what to write; nothing here parses or prints.
"""

from __future__ import annotations

import pathlib
from typing import Sequence

import numpy as np

from adain_jax import transfer
from adain_jax.io import images as image_io


def masks_from_file(path, num_styles: int, height: int, width: int) -> np.ndarray:
    """(1, H, W, K) float masks (two styles: a binary mask, white = first) or a (1, H, W) label map."""
    if num_styles == 2:
        fg = (image_io.load_mask(path, height, width) >= 0.5).astype(np.float32)
        return np.stack([fg, 1.0 - fg], axis=-1)[None]
    return image_io.load_label_map(path, height, width, num_styles)[None]


class Stylizer:
    """Runs stylizations of image files with cached image loads and style statistics."""

    def __init__(self, weights, *, content_size=512, style_size=512, crop=False):
        self.weights = weights
        self.content_size, self.style_size, self.crop = content_size, style_size, crop
        self._styles: dict[pathlib.Path, np.ndarray] = {}
        self._moments: dict[pathlib.Path, tuple] = {}

    def content(self, path) -> np.ndarray:
        return image_io.load_image(path, self.content_size, self.crop)

    def style(self, path) -> np.ndarray:
        if path not in self._styles:
            self._styles[path] = image_io.load_image(path, self.style_size, self.crop)
        return self._styles[path]

    def moments(self, path):
        if path not in self._moments:  # each style is encoded once for all contents
            self._moments[path] = transfer.style_moments(self.weights, self.style(path)[None])
        return self._moments[path]

    def run(self, content: np.ndarray, styles: Sequence[pathlib.Path], *, alpha=1.0, style_weights=None,
            preserve_color=False, masks=None) -> np.ndarray:
        """One (H, W, 3) content array with one style file, or K combined by weights or masks."""
        import jax.numpy as jnp

        content_batch = jnp.asarray(content[None])
        if preserve_color:
            # CORAL depends on the content, so the style images themselves go in, not cached statistics.
            images = [self.style(s) for s in styles]
            if len({im.shape for im in images}) > 1:
                raise ValueError("with --preserve-color, combined styles must have the same size after "
                                 "resizing (use --crop): " + ", ".join(str(s) for s in styles))
            out = transfer.stylize(self.weights, content_batch, np.stack(images), alpha=alpha,
                                   style_weights=style_weights, preserve_color=True, masks=masks)
        else:
            # Styles of different sizes cannot share one batch; their statistics can.
            stats = [self.moments(s) for s in styles]
            mean = jnp.concatenate([m for m, _ in stats])
            std = jnp.concatenate([s for _, s in stats])
            out = transfer.stylize_with_moments(self.weights, content_batch, mean, std, alpha=alpha,
                                                style_weights=style_weights, masks=masks)
        return np.asarray(out)[0]  # on the host: indexing a device array would compile a program
