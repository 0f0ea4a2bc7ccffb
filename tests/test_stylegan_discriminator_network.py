"""adain_jax.stylegan.discriminator_network: logits, parameter counts, minibatch standard deviation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax import stylegan as sg
from adain_jax.stylegan.discriminator_network import minibatch_stddev

TINY = sg.DiscriminatorConfig(resolution=8, channels=3, max_features=16, min_features=8, mbstd_group=2)


def test_default_parameter_count():
    # 16 px grey, features 32 (16x16), 64 (8x8), 128 (4x4); every conv and dense layer has a bias.
    conv = lambda k, i, o: k * k * i * o + o  # noqa: E731
    want = (conv(1, 1, 32)
            + conv(3, 32, 32) + conv(3, 32, 64)          # 16x16 block, down to 8x8
            + conv(3, 64, 64) + conv(3, 64, 128)         # 8x8 block, down to 4x4
            + conv(3, 128 + 1, 128)                      # 4x4 conv after the minibatch-stddev feature
            + (16 * 128 * 128 + 128) + (128 + 1))        # dense, logit
    d = sg.init_discriminator(sg.DiscriminatorConfig(), 0)
    assert sum(int(np.size(x)) for x in jax.tree.leaves(d)) == want == 549_729


def test_logits_shape_and_bad_images():
    d = sg.init_discriminator(TINY, 0)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (6, 8, 8, 3)), jnp.float32)
    logits = sg.discriminator(d, TINY, x)
    assert logits.shape == (6,) and logits.dtype == jnp.float32 and np.all(np.isfinite(np.asarray(logits)))
    with pytest.raises(ValueError, match="images must be"):
        sg.discriminator(d, TINY, x[..., :1])


def test_minibatch_stddev_feature():
    x = np.random.default_rng(1).standard_normal((6, 2, 2, 3)).astype(np.float32)
    out = np.asarray(minibatch_stddev(jnp.asarray(x), 4))  # 6 images: the largest group <= 4 dividing 6 is 3
    assert out.shape == (6, 2, 2, 4)
    np.testing.assert_array_equal(out[..., :3], x)
    x64 = x.astype(np.float64)
    for m in range(2):  # groups {0, 2, 4} and {1, 3, 5}
        members = x64[m::2]
        stat = np.mean(np.sqrt(members.var(axis=0) + 1e-8))
        np.testing.assert_allclose(out[m::2, :, :, 3], stat, rtol=1e-5)


def test_images_in_one_group_see_each_other():
    d = sg.init_discriminator(TINY, 0)
    x = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (4, 8, 8, 3)), jnp.float32)
    a = np.asarray(sg.discriminator(d, TINY, x))
    b = np.asarray(sg.discriminator(d, TINY, x.at[2].set(0.0)))  # image 2 shares a group with image 0
    assert abs(a[0] - b[0]) > 1e-6 and a[1] == pytest.approx(b[1], abs=1e-6)
