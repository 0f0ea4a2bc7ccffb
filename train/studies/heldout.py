"""Scores of a trained variant on held-out content x style pairs, and its stylized pictures of them.

Two kinds of numbers per variant (and per alpha for the alpha grid), each the mean over the pairs:

* the variant's own objective (`adain_jax.model.losses.adain_loss` with the weights' decoder variant,
  so e.g. ImageNet-normalised VGG inputs for ``input_norm=imagenet``) on the unclipped decoder output:
  ``content_loss`` and ``style_loss``, the training losses on images training never saw. Style
  statistics are per image (``statistics="instance"``) for every variant: that is what stylizing one
  image needs, and what a batch-statistics decoder is judged on;
* the quality metrics of `adain_jax.quality.metrics.evaluate` on the clipped result of
  `adain_jax.stylize` (the picture a user gets), all on the same raw-input VGG: a common yardstick.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

OBJECTIVE = ("content_loss", "style_loss")


def load_pairs(contents: Sequence, styles: Sequence, size: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Every content x style pair as two (P, size, size, 3) float32 batches, and ``"content / style"`` names."""
    from adain_jax.io import images as image_io

    c = [image_io.load_image(p, size, crop=True) for p in contents]
    s = [image_io.load_image(p, size, crop=True) for p in styles]
    pairs = [(i, j) for i in range(len(c)) for j in range(len(s))]
    names = [f"{_stem(contents[i])} / {_stem(styles[j])}" for i, j in pairs]
    return np.stack([c[i] for i, _ in pairs]), np.stack([s[j] for _, j in pairs]), names


def _stem(path) -> str:
    import pathlib

    return pathlib.Path(path).stem


@functools.lru_cache(maxsize=None)
def _objective(variant):
    import jax

    from adain_jax.model import losses

    def fn(decoder, encoder, content, style, alpha):
        _, aux = losses.adain_loss(decoder, encoder, content, style, alpha=alpha, variant=variant,
                                   statistics="instance")
        return aux

    return jax.jit(fn)


def evaluate(weights, content: np.ndarray, style: np.ndarray, alphas: Sequence[float] = (1.0,)) -> dict:
    """``{alpha: {"scores": {metric: mean}, "images": (P, H, W, 3)}}`` for the pairs ``content[i], style[i]``."""
    import jax.numpy as jnp

    import adain_jax
    from adain_jax.model import variants
    from adain_jax.quality import metrics

    objective = _objective(variants.of(weights))
    out = {}
    for alpha in alphas:
        result = adain_jax.stylize(weights, content, style, alpha=float(alpha))
        quality = metrics.evaluate(weights["encoder"], content, style, result)
        aux = objective(weights["decoder"], weights["encoder"], content, style, jnp.float32(alpha))
        scores = {k: float(aux[k]) for k in OBJECTIVE}
        scores.update({f"q_{k}": float(np.mean(np.asarray(v))) for k, v in quality.items()})
        out[float(alpha)] = {"scores": scores, "images": np.asarray(result)}
    return out
