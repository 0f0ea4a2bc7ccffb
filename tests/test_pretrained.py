"""adain_jax.pretrained: the model packaged with adain-jax loads, says what it is, and stylizes for real.

"For real" is measured as AdaIN's own objective puts it: the result's per-channel feature statistics
(relu1_1 ... relu4_1 of the packaged encoder) must lie much closer to the style's than the content's
do. The same measure on random weights (whose decoder paints a grey texture) must fail the bound, so
the check cannot pass for a model that does not stylize.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from adain_jax import examples, pretrained
from adain_jax.io import weights as weights_lib
from adain_jax.model import architecture

PAIRS = (("chelsea.jpg", "brick.jpg"), ("astronaut.jpg", "hubble_deep_field.jpg"))
SIZE = 256
# The result's distance to the style's statistics, relative to the content's distance. The packaged model of
# 1,361 steps (v1) measured 0.50 and 0.44 on these pairs, v2 (2,329 steps) 0.43 and 0.43; random weights 1.0 or
# more (checked below).
BOUND = 0.6


def test_packaged_weights_are_installed_in_float16_with_their_record():
    assert pretrained.available()
    with np.load(pretrained.DIRECTORY / weights_lib.WEIGHTS_FILE) as npz:
        assert {npz[k].dtype for k in npz.files} == {np.dtype(np.float16)}
        assert len(npz.files) == 2 * (len(architecture.ENCODER) + len(architecture.DECODER))
    size = (pretrained.DIRECTORY / weights_lib.WEIGHTS_FILE).stat().st_size
    assert 12e6 < size < 16e6
    manifest = json.loads((pretrained.DIRECTORY / weights_lib.MANIFEST).read_text())
    record = manifest["packaged"]
    assert record["vgg"]["md5"] == "253f8cb515780f3b799900260a226db6" and record["vgg"]["keras_md5"] is True
    assert "CC BY 4.0" in record["licence"] and record["training"]["step"] > 0
    assert len(record["data"]["manifest_sha256"]) == 64 and record["normalisation"]["num_images"] > 0
    assert set(record["training"]["final_losses"]) == {"loss", "content_loss", "style_loss"}
    assert "Attribution" in (pretrained.DIRECTORY / "SOURCES.md").read_text()


def test_describe_names_the_packaged_model():
    info = weights_lib.describe(pretrained.DIRECTORY)
    assert info["kind"] == "packaged" and not info["official"]
    assert "adain-jax-open" in info["model"] and "RANDOM" not in info["model"]


def distances(encoder, a, b) -> np.ndarray:
    """Per image: the training's mean/std style loss (`losses.style_loss`, relu1_1..relu4_1) between a and b."""
    import jax.numpy as jnp

    from adain_jax.model import losses, networks

    fa, fb = networks.encode(encoder, jnp.asarray(a)), networks.encode(encoder, jnp.asarray(b))
    return np.array([float(losses.style_loss({k: v[i:i + 1] for k, v in fa.items()},
                                             {k: v[i:i + 1] for k, v in fb.items()})) for i in range(len(a))])


def relative_distances(weights) -> np.ndarray:
    import adain_jax
    from adain_jax.io import images as image_io

    root = examples.directory()
    content = np.stack([image_io.load_image(root / "content" / c, SIZE, crop=True) for c, _ in PAIRS])
    style = np.stack([image_io.load_image(root / "style" / s, SIZE, crop=True) for _, s in PAIRS])
    result = np.clip(np.asarray(adain_jax.stylize(weights, content, style)), 0.0, 1.0)
    # Both models are measured with the packaged encoder: one yardstick.
    encoder = weights_lib.load_weights(pretrained.DIRECTORY)["encoder"]
    return distances(encoder, result, style) / distances(encoder, content, style)


@pytest.fixture(scope="module")
def packaged_relative():
    return relative_distances(weights_lib.load_weights(pretrained.DIRECTORY))


def test_packaged_model_moves_feature_statistics_toward_the_style(packaged_relative):
    assert np.all(packaged_relative < BOUND), packaged_relative


def test_random_weights_fail_the_same_check(packaged_relative):
    random_relative = relative_distances(weights_lib.load_weights(weights_lib.RANDOM))
    assert np.all(random_relative > BOUND), random_relative
    assert np.all(random_relative > 2 * packaged_relative)
