"""Decoder variants of the MVA study of AdaIN (Pilchen & Gascon 2024): skip connections, input normalisation.

A `DecoderVariant` says which network the weights are for; it travels with them as the optional
``weights["variant"]`` entry (absent: the plain AdaIN decoder), so `load_weights`, `stylize` and
``adain-jax stylize --weights`` rebuild the right network with no extra flag. It is a *static*
pytree node (`jax.tree_util.register_static`): it has no leaves, so tree maps, `device_put` and
the weights files skip it, while `jax.jit` sees it in the tree structure and compiles one program
per variant.

* ``skip`` (``"none"`` | ``"add"`` | ``"concat"``) and ``skip_source`` (``"content"`` | ``"style"`` |
  ``"both"``): U-Net-like skips of the encoder's relu3_1 (256 ch, 1/4 size), relu2_1 (128 ch, 1/2)
  and relu1_1 (64 ch, full size) into the input of the decoder layer that mirrors each of them
  (`SKIP_LAYERS`: decoder conv3_1, conv2_1 and conv1_1, the last layer of each resolution level,
  whose inputs have exactly those shapes). ``"both"`` takes the sum of the content's and the
  style's features (for ``concat`` too). ``add`` adds the features to the layer's input: no new
  parameters. ``concat`` keeps every layer's ``in_channels``: the decoder layer before each skip
  (conv3_2, conv2_2, conv1_2) outputs half its channels and the skip supplies the other half, the
  mean of each pair of adjacent feature channels (channels 2i and 2i + 1). So a concat decoder has
  *fewer* parameters than the plain one: 9 * (256*128 + 128*64 + 64*32) + 128 + 64 + 32 = 387,296
  fewer (3,117,923 instead of 3,505,219); the study's "without increasing the parameter count".
* Sizes. The decoder's feature maps are 2^k * ceil(H / 8) high, the encoder's ceil(H / 2^(3-k)):
  equal when H is a multiple of 8 (always in training), otherwise a skip is padded at the bottom
  and right by repeating its last row/column (those rows are cropped from the output).
  Style features meet a content of another size by nearest-neighbour resizing to the content's
  feature map at the same level (`ops.resize_nearest`, pixel-centre sampling, as masks are
  resized), at inference and in training alike (where the sizes match, it is the identity).
* ``input_norm`` (``"none"`` | ``"imagenet"``): images in [0, 1] are normalised with the ImageNet
  mean and std before every pass through the VGG encoder (content, style and, in training, the
  decoded image), as the study did (its section 2.3.3). The decoder still outputs [0, 1] RGB.

The training-only switch ``statistics`` (``"instance"`` | ``"batch"``) is checked here
(`check_statistics`) but is not part of the variant: it changes the objective
(`adain_jax.model.losses`), not the network, and at inference every style uses its own statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypedDict

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.model import architecture, ops

SKIPS = ("none", "add", "concat")
SKIP_SOURCES = ("content", "style", "both")
INPUT_NORMS = ("none", "imagenet")
STATISTICS = ("instance", "batch")
# (encoder feature, decoder layer whose input it meets): same channels and resolution.
SKIP_LAYERS = (("relu3_1", "conv3_1"), ("relu2_1", "conv2_1"), ("relu1_1", "conv1_1"))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CONFIG_KEYS = ("skip", "skip_source", "input_norm")  # the training config keys that make a variant


def _check(name: str, value: Any, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")


def check_statistics(statistics: str) -> None:
    """ValueError unless ``statistics`` is ``"instance"`` or ``"batch"``."""
    _check("statistics", statistics, STATISTICS)


@dataclasses.dataclass(frozen=True)
class DecoderVariant:
    """Which decoder (and encoder input) the weights are for; hashable and static under `jax.jit`."""

    skip: str = "none"
    skip_source: str = "content"
    input_norm: str = "none"

    def __post_init__(self):
        _check("skip", self.skip, SKIPS)
        _check("skip_source", self.skip_source, SKIP_SOURCES)
        _check("input_norm", self.input_norm, INPUT_NORMS)
        if self.skip == "none":  # the source means nothing then: one variant, one compiled program
            object.__setattr__(self, "skip_source", "content")

    @property
    def is_plain(self) -> bool:
        """The official AdaIN network: no skips, raw [0, 1] images into the VGG."""
        return self == PLAIN

    @property
    def content_skips(self) -> bool:
        return self.skip != "none" and self.skip_source in ("content", "both")

    @property
    def style_skips(self) -> bool:
        """True when decoding needs the style *images'* features, not only their statistics."""
        return self.skip != "none" and self.skip_source in ("style", "both")

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, record: Mapping[str, Any] | None) -> DecoderVariant:
        """From `to_json`'s dict or a training config (other keys ignored; missing keys: the defaults)."""
        record = record or {}
        return cls(**{k: record[k] for k in CONFIG_KEYS if record.get(k) is not None})

    def describe(self) -> str:
        parts = [] if self.skip == "none" else [f"skip={self.skip} ({self.skip_source})"]
        if self.input_norm != "none":
            parts.append(f"input_norm={self.input_norm}")
        return ", ".join(parts) or "plain"


class _Networks(TypedDict):
    encoder: architecture.Params
    decoder: architecture.Params


class Weights(_Networks, total=False):
    """The whole model's weights, the pytree `stylize` and `load_weights` use:
    ``{"encoder": Params, "decoder": Params}``, plus ``"variant"`` (a `DecoderVariant`) for a decoder
    variant of the MVA study; absent or None means the plain AdaIN decoder. A plain dict at run time.
    """

    variant: DecoderVariant | None



jax.tree_util.register_static(DecoderVariant)
PLAIN = DecoderVariant()


def of(weights: Mapping[str, Any]) -> DecoderVariant:
    """The variant of a weights dict (``weights["variant"]``; absent or None: the plain decoder)."""
    variant = weights.get("variant") if isinstance(weights, Mapping) else None
    if variant is None:
        return PLAIN
    if not isinstance(variant, DecoderVariant):
        raise ValueError(f'weights["variant"] must be a DecoderVariant, got {type(variant).__name__}')
    return variant


def require_plain(weights: Mapping[str, Any], what: str) -> None:
    """ValueError naming ``what`` when the weights are for a decoder variant it does not implement."""
    variant = of(weights)
    if not variant.is_plain:
        raise ValueError(f"{what} supports the plain AdaIN decoder only; these weights are for {variant.describe()}")


def attach(weights: Mapping[str, Any], variant: DecoderVariant | None) -> Weights:
    """``weights``' networks with ``variant`` recorded; the plain variant is left out, so plain weights
    stay ``{"encoder", "decoder"}`` exactly (same tree structure, same compiled programs as before)."""
    out: Weights = {"encoder": weights["encoder"], "decoder": weights["decoder"]}
    if variant is not None and not variant.is_plain:
        out["variant"] = variant
    return out


def decoder_specs(variant: DecoderVariant | None = None) -> tuple[architecture.ConvSpec, ...]:
    """The decoder's layer table for ``variant``: for ``concat`` the layer before each skip outputs
    half its channels (the skip supplies the other half); otherwise `architecture.DECODER`."""
    if variant is None or variant.skip != "concat":
        return architecture.DECODER
    targets = {target for _, target in SKIP_LAYERS}
    specs = list(architecture.DECODER)
    for i in range(1, len(specs)):
        if specs[i].name in targets:
            specs[i - 1] = dataclasses.replace(specs[i - 1], out_channels=specs[i - 1].out_channels // 2)
    return tuple(specs)


def normalize_input(images, variant: DecoderVariant | None):
    """What the VGG encoder sees: ``images`` unchanged, or ImageNet-normalised for ``input_norm="imagenet"``.

    Works on numpy and JAX arrays alike; the plain variant returns the very same object.
    """
    if variant is None or variant.input_norm == "none":
        return images
    xp = jnp if isinstance(images, jax.Array) or not isinstance(images, np.ndarray) else np
    mean = xp.asarray(IMAGENET_MEAN, images.dtype)
    std = xp.asarray(IMAGENET_STD, images.dtype)
    return (images - mean) / std


def fit(x: jax.Array, height: int, width: int) -> jax.Array:
    """An encoder feature map (N, h, w, C) -> the decoder's (N, height, width, C) at the same level.

    The decoder's maps are never smaller (2^k * ceil(H / 8) >= ceil(H / 2^(3-k))); the extra bottom
    rows/right columns repeat the last ones (they decode to pixels cropped from the output).
    """
    dh, dw = height - x.shape[1], width - x.shape[2]
    if dh < 0 or dw < 0:
        raise ValueError(f"skip features of size {x.shape[1:3]} are larger than the decoder's {(height, width)}")
    if dh or dw:
        x = jnp.pad(x, ((0, 0), (0, dh), (0, dw), (0, 0)), mode="edge")
    return x


def merge(x: jax.Array, skip: jax.Array, mode: str) -> jax.Array:
    """The decoder layer input with its skip: ``x + skip`` (add), or ``x`` next to the pair means of
    ``skip``'s channels (concat; ``x`` then has half the layer's input channels)."""
    skip = fit(skip, x.shape[1], x.shape[2]).astype(x.dtype)
    if mode == "add":
        return x + skip
    if mode == "concat":
        n, h, w, c = skip.shape
        half = jnp.mean(skip.reshape(n, h, w, c // 2, 2), axis=-1)
        return jnp.concatenate([x, half], axis=-1)
    raise ValueError(f"skip must be 'add' or 'concat' to merge, got {mode!r}")


def skip_features(variant: DecoderVariant, content_feats: Mapping[str, jax.Array],
                  style_feats: Mapping[str, jax.Array] | None = None) -> dict[str, jax.Array] | None:
    """The skips for the decoder: {relu3_1, relu2_1, relu1_1} -> (N, h, w, C) at the content's size.

    ``content_feats``: the content's encoder features (N images); ``style_feats``: one style's
    features per content image (batch N or 1; several styles already mixed by the caller), resized
    here to the content's feature size. None for a variant without skips.
    """
    if variant.skip == "none":
        return None
    styles = style_feats if variant.style_skips else None
    if variant.style_skips and styles is None:
        raise ValueError(f"this decoder ({variant.describe()}) needs the style images' features")
    out = {}
    for layer, _ in SKIP_LAYERS:
        c = content_feats[layer]
        terms = [c] if variant.content_skips else []
        if styles is not None:
            s = ops.resize_nearest(styles[layer], c.shape[1], c.shape[2]).astype(c.dtype)
            terms.append(jnp.broadcast_to(s, c.shape))
        out[layer] = terms[0] if len(terms) == 1 else terms[0] + terms[1]
    return out
