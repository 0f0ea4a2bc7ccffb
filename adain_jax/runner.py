"""Files in, stylized arrays out: the runner behind every front end (the CLI's stylize and demo).

`Stylizer` loads images with the port's test-time transform, caches each style image and its
relu4_1 statistics (a style is encoded once for all contents), and calls the jitted `stylize`
functions: tile by tile (`adain_jax.tiling`) when asked or when the image would not fit in memory,
and with a batch of same-size contents split over every local device (`run_batch`).
Front ends parse their own arguments (into `adain_jax.controls.Controls`) and decide what to write;
nothing here parses or prints. Refusals are `controls.ControlError` (e.g. combined styles of unequal
sizes), which each front end words with its own flags.

Decoder variants (``weights["variant"]``): a decoder with skips of the style's features needs the
style images, not their cached statistics, so it goes through `transfer.stylize` (combined styles
must then have one size, as for colour preservation). Tiling is for the plain decoder's layers:
``tile="auto"`` never tiles a decoder with skips (it runs untiled), and a positive tile for one is
refused by `tiling` when the image is larger than the tile.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from adain_jax import controls, transfer
from adain_jax.io import images as image_io
from adain_jax.model import variants
from adain_jax.precision import Precision

# What names a style (or content): a file path for `Stylizer`; a subclass that overrides `content` and
# `style` may load from anything hashable whose str() names it in messages (the server's uploads).
Source = Hashable


class Stylizer:
    """Runs stylizations of image files with cached image loads and style statistics."""

    def __init__(self, weights, *, content_size=512, style_size=512, crop=False, tile: int | str = 0,
                 progress: bool = False, keep_style_images: bool = True, precision: Precision = "float32"):
        """``tile``: pixels per tile (0: never tile), or "auto" to tile only images that would not fit
        in memory (`tiling.auto_tile`); ``progress``: a progress bar over the tiles of a tiled image;
        ``keep_style_images=False`` keeps only each style's statistics (thousands of styles);
        ``precision``: of the convolutions (`adain_jax.precision`)."""
        self.weights = weights
        self.precision = precision
        self.variant = variants.of(weights)
        self.content_size, self.style_size, self.crop = content_size, style_size, crop
        self.tile, self.progress, self.keep_style_images = tile, progress, keep_style_images
        self._styles: dict[Source, np.ndarray] = {}
        self._moments: dict[Source, tuple] = {}

    def content(self, path) -> np.ndarray:
        return image_io.load_image(path, self.content_size, self.crop)

    def style(self, path) -> np.ndarray:
        if path not in self._styles:
            self._styles[path] = image_io.load_image(path, self.style_size, self.crop)
        return self._styles[path]

    def moments(self, path):
        if path not in self._moments:  # each style is encoded once for all contents
            self._moments[path] = transfer.style_moments(self.weights, self.style(path)[None],
                                                         precision=self.precision)
            if not self.keep_style_images:
                self._styles.pop(path, None)
        return self._moments[path]

    def tile_for(self, batch: int, height: int, width: int) -> int:
        """The tile size for a (batch, height, width) content: 0 when it is not tiled."""
        from adain_jax import tiling

        if self.tile == "auto":
            tile = 0 if self.variant.skip != "none" else tiling.auto_tile(batch, height, width)
        else:
            tile = int(self.tile)
        # One window covering the whole image is the untiled computation, done in one pass.
        return 0 if tile and height <= tile and width <= tile else tile

    def run(self, content: np.ndarray, styles: Sequence[Source], *, alpha: controls.Alpha = 1.0,
            style_weights: controls.StyleWeights | None = None, preserve_color: bool = False,
            masks: controls.Masks | None = None) -> np.ndarray:
        """One (H, W, 3) content array with one style file, or K combined by weights or masks."""
        tile = self.tile_for(1, *content.shape[:2])
        if tile:
            return self._run_tiled(content, styles, tile, alpha=alpha, style_weights=style_weights,
                                   preserve_color=preserve_color, masks=masks)
        content_batch = content[None]
        if preserve_color or self.variant.style_skips:
            # CORAL depends on the content, and style skips take the style's features: the style images
            # themselves go in, not cached statistics.
            images = self._style_images(styles, "preserve_color" if preserve_color else "style skips")
            out = transfer.stylize(self.weights, content_batch, images, alpha=alpha, style_weights=style_weights,
                                   preserve_color=preserve_color, masks=masks, precision=self.precision)
        else:
            # Styles of different sizes cannot share one batch; their statistics can.
            mean, std = self._stacked_moments(styles)
            out = transfer.stylize_with_moments(self.weights, content_batch, mean, std, alpha=alpha,
                                                style_weights=style_weights, masks=masks, precision=self.precision)
        return np.asarray(out)[0]  # on the host: indexing a device array would compile a program

    def _run_tiled(self, content: np.ndarray, styles: Sequence[Source], tile: int, *, alpha: controls.Alpha,
                   style_weights: controls.StyleWeights | None, preserve_color: bool,
                   masks: controls.Masks | None) -> np.ndarray:
        from adain_jax import tiling

        if preserve_color:
            images = self._style_images(styles, "preserve_color")
            out = tiling.stylize_tiled(self.weights, content[None], images, tile=tile, alpha=alpha,
                                       style_weights=style_weights, preserve_color=True, masks=masks,
                                       progress=self.progress, precision=self.precision)
        else:
            mean, std = self._stacked_moments(styles)
            out = tiling.stylize_tiled_with_moments(self.weights, content[None], mean, std, tile=tile,
                                                    alpha=alpha, style_weights=style_weights, masks=masks,
                                                    progress=self.progress, precision=self.precision)
        return out[0]

    def _style_images(self, styles: Sequence[Source], why: str) -> np.ndarray:
        """The style images as one (K, H, W, 3) batch; ControlError (rule STYLE_SIZES) when sizes differ."""
        images = [self.style(s) for s in styles]
        controls.check_same_size([im.shape for im in images], styles, why)
        return np.stack(images)

    def _stacked_moments(self, styles: Sequence[Source]):
        """The styles' (K, 1, 1, C) means and standard deviations, stacked on the host: an eager jnp
        operation would compile (or load) a program of its own, a noticeable part of a one-shot command."""
        stats = [self.moments(s) for s in styles]
        if len(stats) == 1:
            return stats[0]
        return (np.concatenate([np.asarray(m) for m, _ in stats]), np.concatenate([np.asarray(s) for _, s in stats]))

    def run_batch(self, contents: np.ndarray, styles: Sequence[Sequence[Source]], *,
                  alpha: controls.Alpha = 1.0, style_weights: controls.StyleWeights | None = None,
                  preserve_color: bool = False, masks: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W, 3) same-size contents, ``styles[i]`` for content i (one file each, or the same K
        combined files for all) -> (N, H, W, 3), the batch split over every local device.

        ``masks``: (N, H, W, K) or (N, H, W) as `stylize` takes. Tiled sizes and colour preservation
        (a style image per pair) run image by image through `run`.
        """
        from adain_jax import transfer

        n = contents.shape[0]
        combined = style_weights is not None or masks is not None
        if n == 1 or preserve_color or self.variant.style_skips or self.tile_for(n, *contents.shape[1:3]):
            return np.stack([self.run(contents[i], styles[i], alpha=alpha, style_weights=style_weights,
                                      preserve_color=preserve_color,
                                      masks=None if masks is None else masks[i:i + 1])
                             for i in range(n)])
        if combined:
            mean, std = self._stacked_moments(styles[0])
        else:
            mean, std = self._stacked_moments([s for (s,) in styles])
        out = transfer.stylize_with_moments_sharded(self.weights, contents, mean, std, alpha=alpha,
                                                    style_weights=style_weights, masks=masks,
                                                    precision=self.precision)
        return np.asarray(out)


def same_size_batches(items: Iterable, load: Callable[[Any], np.ndarray], size: int,
                      on_error: Callable[[Any, Exception], None]) -> Iterator[list[tuple[Any, np.ndarray]]]:
    """Consecutive ``items`` whose images (``load(item)``) have the same shape, at most ``size`` a batch.

    For one image per local device: each image is still computed alone on its device, so its result
    does not depend on its neighbours. An item that cannot be loaded goes to ``on_error`` and is left out.
    """
    batch: list = []
    for item in items:
        try:
            image = load(item)
        except (image_io.ImageError, ValueError, OSError) as e:
            on_error(item, e)
            continue
        if batch and (len(batch) == size or batch[0][1].shape != image.shape):
            yield batch
            batch = []
        batch.append((item, image))
    if batch:
        yield batch
