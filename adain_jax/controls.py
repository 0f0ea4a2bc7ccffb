"""The style controls and their rules, in one place: what may be combined with what, how several
styles are paired with the content images and mixed, and how masks become region weights.

`Controls` is what a front end asks for (alpha, style weights or a mask, how many styles go into one
image, colour preservation, cropping); building one validates it, so the command line, the video
command and the web app refuse the same requests with the same rules. The array functions below are
the same rules for the library's arrays; `adain_jax.transfer` (jitted) and `adain_jax.tiling` (host
arrays) both call them, so a stylization is defined once. Every refusal is a `ControlError` whose
message says what is wrong in the library's terms and whose ``rule`` names the rule, so that each
front end can say it in its own words and flags.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

if TYPE_CHECKING:
    from jax.typing import ArrayLike

# The array controls' types, as `stylize`, `stylize_tiled` and the video's smoothing take them. Named
# in strings: this module must stay importable without JAX (the front ends build `Controls` first).
Alpha: TypeAlias = "ArrayLike"
"""Degree of stylization: a scalar, or one value per content image, shape (N,)."""
StyleWeights: TypeAlias = "ArrayLike | Sequence[float]"
"""K non-negative interpolation weights, shape (K,), normalised to sum 1 when mixing."""
Masks: TypeAlias = "ArrayLike"
"""Spatial control at content resolution: (N or 1, H, W, K) float weights or an (N, H, W) integer label map."""

# ControlError.rule values.
BOTH = "both"                  # style weights and masks given together
TOO_FEW = "too_few_styles"     # combining needs two styles or more
COUNT = "weights_count"        # one style weight per style
UNCOMBINED = "uncombined"      # several styles for one image without saying how to combine them
MASK_CROP = "mask_crop"        # a mask is drawn for the whole content, so no cropping
STYLE_SIZES = "style_sizes"    # combined style images that must share one size do not
SHAPES = "shapes"              # arrays whose shapes do not fit the controls


class ControlError(ValueError):
    """A style control that cannot be honoured. ``rule``: which one (the constants above);
    ``detail``: what a front end needs to reword it (e.g. the counts, the style names)."""

    def __init__(self, rule: str, message: str, **detail: Any):
        super().__init__(message)
        self.rule = rule
        self.detail = detail


@dataclasses.dataclass(frozen=True)
class Controls:
    """One stylization's controls, validated on construction (ControlError).

    ``num_styles``: style images combined into each output (1 unless ``style_weights`` or ``masked``);
    ``style_weights``: one non-negative weight per style (interpolation), normalised when mixing;
    ``masked``: a mask or label image chooses the style region by region (spatial control);
    ``crop``: content and style are centre-cropped after resizing.
    """

    num_styles: int = 1
    alpha: float = 1.0
    style_weights: tuple[float, ...] | None = None
    masked: bool = False
    preserve_color: bool = False
    crop: bool = False

    def __post_init__(self):
        if self.style_weights is not None:
            object.__setattr__(self, "style_weights", tuple(float(w) for w in self.style_weights))
        check_exclusive(self.style_weights, True if self.masked else None)
        if self.combined and self.num_styles < 2:
            raise ControlError(TOO_FEW, "style weights and masks need at least two styles",
                               num_styles=self.num_styles)
        if self.style_weights is not None and len(self.style_weights) != self.num_styles:
            raise ControlError(COUNT, f"{len(self.style_weights)} style weights for {self.num_styles} styles",
                               weights=len(self.style_weights), num_styles=self.num_styles)
        if not self.combined and self.num_styles != 1:
            raise ControlError(UNCOMBINED, f"{self.num_styles} styles for one image: combine them with style "
                                           "weights (interpolation) or a mask (spatial control)",
                               num_styles=self.num_styles)
        if self.masked and self.crop:
            raise ControlError(MASK_CROP, "a mask is drawn for the whole content image; it cannot be combined "
                                          "with cropping")

    @property
    def combined(self) -> bool:
        """Several styles go into each image (by weights or by a mask)."""
        return self.style_weights is not None or self.masked

    def weights_array(self) -> np.ndarray | None:
        """``style_weights`` as the float32 array `stylize` takes (None without)."""
        return None if self.style_weights is None else np.asarray(self.style_weights, np.float32)

    def output_name(self, content_stem: str, style_stems: Sequence[str], ext: str) -> str:
        """The result's file name: ``<content>_stylized_<style>[_<style>...].<ext>``, or
        ``<content>_interpolation.<ext>`` for interpolated styles."""
        ext = ext.lstrip(".").lower()
        if self.style_weights is not None:
            return f"{content_stem}_interpolation.{ext}"
        return f"{content_stem}_stylized_{'_'.join(style_stems)}.{ext}"


# ------------------------------------------------------------------------------------ arrays


def check_exclusive(style_weights: StyleWeights | None, masks: Masks | None) -> None:
    """ControlError when both interpolation weights and masks are given."""
    if style_weights is not None and masks is not None:
        raise ControlError(BOTH, "give either style_weights (interpolation) or masks (spatial control), not both")


def check_style_batch(name: str, style_batch: int, n: int) -> None:
    """One style (or one style's statistics) per content image, or one for all: ControlError otherwise."""
    if style_batch not in (1, n):
        raise ControlError(SHAPES, f"{name} has batch {style_batch}; expected 1 or {n} (one per content image)")


def check_same_size(shapes: Sequence[tuple[int, ...]], names: Sequence[Any], why: str) -> None:
    """Combined style images that go into one batch (colour preservation, style skips) must share a size.

    ``why``: the condition, in the library's words (e.g. ``"preserve_color"``).
    """
    if len(set(shapes)) > 1:
        raise ControlError(STYLE_SIZES, f"with {why}, combined styles must have the same size after resizing: "
                           + ", ".join(str(s) for s in names), why=why, names=[str(s) for s in names])


def paired_styles(style, n: int, combined: bool, xp=np):
    """Every (content, style) pair as its own style image, for colour preservation.

    ``style``: (K, H, W, 3) combined styles for every content, or (1 or N, ...) one per content ->
    (N * K, H, W, 3) in content-major order, and K.
    """
    k = style.shape[0] if combined else 1
    styles = style[None] if combined else style[:, None]
    styles = xp.broadcast_to(styles, (n, k, *style.shape[1:]))
    return styles.reshape((n * k, *style.shape[1:])), k


def mixing_weights(style_weights: StyleWeights, num_styles: int, xp=np):
    """``style_weights`` normalised to sum 1, as float32 (ControlError for a wrong count)."""
    weights = xp.asarray(style_weights, xp.float32)
    if weights.shape != (num_styles,):
        raise ControlError(SHAPES, f"style_weights must have shape ({num_styles},) for {num_styles} styles, "
                                   f"got {weights.shape}")
    return weights / xp.sum(weights)


def region_masks(masks: Masks, num_styles: int, content_shape: tuple[int, ...], grid: tuple[int, int]):
    """Content-resolution masks -> (N, h, w, K) float32 region weights on a ``grid`` of (h, w).

    ``masks``: (N or 1, H, W, K) float weights (mask k picks style k) or an (N, H, W) integer label
    map with values in [0, K). Nearest sampling picks pixels, so the map is sampled before it is
    one-hot encoded (the same values as encoding first, in K times less memory). A host array gives a
    host array (tiled stylization); anything else is traced with jax.numpy.
    """
    if isinstance(masks, np.ndarray):
        return _region_masks(masks, num_styles, content_shape, grid, host=True)
    import jax.numpy as jnp

    return _region_masks(jnp.asarray(masks), num_styles, content_shape, grid, host=False)


def _region_masks(masks, num_styles: int, content_shape: tuple[int, ...], grid: tuple[int, int], host: bool):
    """`region_masks` of a numpy array (``host``) or a JAX array, with that array library."""
    import jax
    import jax.numpy as jnp

    from adain_jax.model import ops

    xp = np if host else jnp
    n, h, w = content_shape[:3]
    label_map = masks.ndim == 3 and xp.issubdtype(masks.dtype, xp.integer)
    full = masks[..., None] if label_map else masks
    if full.ndim != 4 or full.shape[1:3] != (h, w) or full.shape[0] not in (1, n):
        raise ControlError(SHAPES, f"masks must have shape (N, {h}, {w}, K) (or an integer label map (N, {h}, {w})) "
                                   f"to match content {tuple(content_shape)}, got {masks.shape}")
    if not label_map and full.shape[-1] != num_styles:
        raise ControlError(SHAPES, f"masks select among {full.shape[-1]} styles but {num_styles} style images were "
                                   "given")
    small = ops.resize_mask_nearest(full, *grid)
    if label_map:
        # Labels outside [0, K) select no style, as jax.nn.one_hot has it.
        small = ((small == np.arange(num_styles)) if host
                 else jax.nn.one_hot(small[..., 0], num_styles, dtype=jnp.float32))
    return xp.broadcast_to(small.astype(xp.float32), (n, *tuple(grid), num_styles))
