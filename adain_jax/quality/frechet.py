"""The Fréchet distance between two sets of features, and the small CNN classifier whose features it uses.

FID (Heusel et al. 2017) is the Fréchet distance between Gaussians fitted to Inception-v3 pool3
features of real and generated images. Inception's weights cannot be had here, so the StyleGAN
ablation (`train.ablation`) measures the same distance in the penultimate-layer features of a small
CNN trained on the same dataset: call it "FD-<dataset> (classifier features)", never FID. Its values
are on another scale than FID and only comparable between runs that use the same classifier.

* `statistics`, `frechet_distance`, `frechet_distance_of`: ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``
  in float64. The trace of the matrix square root is taken from the eigenvalues of the symmetric
  ``S1^(1/2) S2 S1^(1/2)`` (same spectrum as ``S1 S2``), so no complex parts or ``sqrtm`` iteration
  appear and rank-deficient covariances (fewer samples than features) are fine.
* `init_classifier`, `classifier_logits`, `classifier_features`: two 3x3 conv + ReLU + 2x2 average
  pool blocks, a dense ReLU layer (the features) and a linear layer to the class logits; pure
  functions of a params pytree, NHWC float32 images in [-1, 1]. Training lives with the ablation
  (`train.fd_classifier`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

# --------------------------------------------------------------------------------------------------
# The distance.
# --------------------------------------------------------------------------------------------------


def statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (unbiased) covariance of ``features`` (N, D), in float64."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N >= 2, D), got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1])


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh((s + s.T) * 0.5)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """The Fréchet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2), squared as in FID."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched shapes: mu {mu1.shape} / {mu2.shape}, sigma {s1.shape} / {s2.shape}")
    root1 = _sqrt_psd(s1)
    middle = root1 @ s2 @ root1
    trace_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) * 0.5), 0.0, None)))
    distance = float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt)
    return max(distance, 0.0)  # rounding can take a zero distance a hair below 0


def frechet_distance_of(features1, features2) -> float:
    """`frechet_distance` of the Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*statistics(features1), *statistics(features2))


# --------------------------------------------------------------------------------------------------
# The classifier.
# --------------------------------------------------------------------------------------------------


def init_classifier(seed: int, *, channels: int, resolution: int, num_classes: int, width: int = 32,
                    features: int = 128) -> dict:
    """He-normal weights drawn with numpy from ``seed``; ``resolution`` must be a multiple of 4."""
    if resolution % 4:
        raise ValueError(f"resolution must be a multiple of 4, got {resolution}")
    rng = np.random.default_rng([seed, 0xFD])

    def he(shape, fan_in):
        return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)

    flat = (resolution // 4) ** 2 * 2 * width
    return {
        "conv1": {"kernel": he((3, 3, channels, width), 9 * channels), "bias": np.zeros(width, np.float32)},
        "conv2": {"kernel": he((3, 3, width, 2 * width), 9 * width), "bias": np.zeros(2 * width, np.float32)},
        "fc": {"kernel": he((flat, features), flat), "bias": np.zeros(features, np.float32)},
        "out": {"kernel": he((features, num_classes), features) * 0.1, "bias": np.zeros(num_classes, np.float32)},
    }


def _conv_relu_pool(p: dict, x: jax.Array) -> jax.Array:
    x = jax.lax.conv_general_dilated(x, p["kernel"], (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    x = jax.nn.relu(x + p["bias"])
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def classifier_features(params: dict, images: jax.Array) -> jax.Array:
    """(N, H, W, C) images in [-1, 1] -> (N, features): the penultimate layer, after its ReLU."""
    x = _conv_relu_pool(params["conv2"], _conv_relu_pool(params["conv1"], jnp.asarray(images, jnp.float32)))
    x = x.reshape(x.shape[0], -1)
    return jax.nn.relu(x @ params["fc"]["kernel"] + params["fc"]["bias"])


def classifier_logits(params: dict, images: jax.Array) -> jax.Array:
    """(N, H, W, C) images in [-1, 1] -> (N, num_classes) logits."""
    return classifier_features(params, images) @ params["out"]["kernel"] + params["out"]["bias"]
