"""`stylize` controls, shapes, batching and compilation behaviour (parity lives in test_parity.py)."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adain_jax
from adain_jax.model import networks

from helpers import run_on_devices

H, W = 29, 37  # odd on purpose: exercises ceil-mode pooling and the crop back to size


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    content = jnp.asarray(rng.random((2, H, W, 3), np.float32))
    styles = jnp.asarray(rng.random((3, 24, 32, 3), np.float32))
    return content, styles


def test_stylize_is_a_jitted_function_and_keeps_the_content_size(random_weights, images):
    content, style = images[0], images[1][:1]
    # jax.jit-ted: for given shapes it lowers to one XLA program, traces as one jit call inside other
    # functions, and a call runs exactly the executable compiled from that program.
    lowered = adain_jax.stylize.lower(random_weights, content, style)
    assert lowered.as_text().startswith("module @jit_stylize") and lowered.out_info.shape == (2, H, W, 3)
    traced = jax.make_jaxpr(lambda c: adain_jax.stylize(random_weights, c, style))(content)
    assert [e.primitive.name for e in traced.eqns] == ["jit"]
    out = adain_jax.stylize(random_weights, content, style)
    np.testing.assert_array_equal(lowered.compile()(random_weights, content, style), out)
    assert out.shape == (2, H, W, 3) and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    inside = float(jnp.mean((out > 0) & (out < 1)))
    assert inside > 0.5, f"only {inside:.0%} of pixels unclipped: comparisons below would be vacuous"


def test_changing_controls_does_not_recompile(random_weights, images):
    content, styles = images
    adain_jax.stylize(random_weights, content, styles[:1], alpha=1.0)
    adain_jax.stylize(random_weights, content, styles, style_weights=jnp.asarray([1.0, 1.0, 1.0]))
    before = adain_jax.stylize._cache_size()  # compiled variants (one per shape and control set)
    for alpha in (1.0, 0.5, 0.25):
        adain_jax.stylize(random_weights, content, styles[:1], alpha=alpha)
    for w in ([1.0, 2.0, 3.0], [0.2, 0.2, 0.6]):
        adain_jax.stylize(random_weights, content, styles, style_weights=jnp.asarray(w))
    assert adain_jax.stylize._cache_size() == before  # new values never recompile
    # A new shape does (one no other test uses, so the count does not depend on the test order).
    adain_jax.stylize(random_weights, content[:1, : H - 3], styles[:1])
    assert adain_jax.stylize._cache_size() == before + 1


def test_alpha_zero_reconstructs_through_the_content_features(random_weights, images):
    content, styles = images
    out = adain_jax.stylize(random_weights, content, styles[:1], alpha=0.0)
    feats = networks.encode(random_weights["encoder"], content)["relu4_1"]
    expected = jnp.clip(networks.decode(random_weights["decoder"], feats)[:, :H, :W], 0, 1)
    np.testing.assert_allclose(out, expected, atol=1e-5)


def test_per_image_alpha_equals_separate_calls(random_weights, images):
    content, styles = images
    both = adain_jax.stylize(random_weights, content, styles[:2], alpha=jnp.asarray([0.3, 0.9]))
    first = adain_jax.stylize(random_weights, content[:1], styles[:1], alpha=0.3)
    second = adain_jax.stylize(random_weights, content[1:], styles[1:2], alpha=0.9)
    np.testing.assert_allclose(both, jnp.concatenate([first, second]), atol=1e-5)


def test_one_hot_interpolation_equals_the_single_style(random_weights, images):
    content, styles = images
    mixed = adain_jax.stylize(random_weights, content, styles, style_weights=jnp.asarray([0.0, 5.0, 0.0]))
    single = adain_jax.stylize(random_weights, content, styles[1:2])
    np.testing.assert_allclose(mixed, single, atol=1e-5)


def test_interpolation_weights_are_normalised(random_weights, images):
    content, styles = images
    a = adain_jax.stylize(random_weights, content, styles, style_weights=jnp.asarray([1.0, 2.0, 1.0]))
    b = adain_jax.stylize(random_weights, content, styles, style_weights=jnp.asarray([0.25, 0.5, 0.25]))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_a_mask_covering_everything_equals_plain_adain_with_that_style(random_weights, images):
    content, styles = images
    masks = np.zeros((2, H, W, 2), np.float32)
    masks[..., 1] = 1.0
    out = adain_jax.stylize(random_weights, content, styles[:2], masks=masks)
    np.testing.assert_allclose(out, adain_jax.stylize(random_weights, content, styles[1:2]), atol=1e-5)


def test_label_map_equals_one_hot_masks(random_weights, images):
    content, styles = images
    labels = np.random.default_rng(1).integers(0, 3, size=(2, H, W)).astype(np.int32)
    one_hot = np.eye(3, dtype=np.float32)[labels]
    a = adain_jax.stylize(random_weights, content, styles, masks=labels)
    b = adain_jax.stylize(random_weights, content, styles, masks=one_hot)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_binary_mask_gives_each_region_its_own_style(random_weights, images):
    content, styles = images
    fg = np.zeros((2, H, W), np.float32)
    fg[:, :, : W // 2] = 1.0
    masks = np.stack([fg, 1 - fg], -1)
    out = np.asarray(adain_jax.stylize(random_weights, content, styles[:2], masks=masks))
    only_a = np.asarray(adain_jax.stylize(random_weights, content, styles[:1]))
    # Different regions differ from either single-style result somewhere (the mask did something).
    assert np.abs(out - only_a).max() > 1e-3


def test_batch_results_equal_single_image_results(random_weights, images):
    content, styles = images
    batch = adain_jax.stylize(random_weights, content, styles[:1], preserve_color=True)
    for i in range(2):
        single = adain_jax.stylize(random_weights, content[i:i + 1], styles[:1], preserve_color=True)
        np.testing.assert_allclose(batch[i:i + 1], single, atol=1e-4)


def test_two_stage_api_equals_stylize(random_weights, images):
    content, styles = images
    mean, std = adain_jax.style_moments(random_weights, styles)
    two_stage = adain_jax.stylize_with_moments(random_weights, content, mean, std,
                                               style_weights=jnp.asarray([0.5, 0.3, 0.2]), alpha=0.7)
    one_call = adain_jax.stylize(random_weights, content, styles, style_weights=jnp.asarray([0.5, 0.3, 0.2]),
                                 alpha=0.7)
    np.testing.assert_allclose(two_stage, one_call, atol=1e-5)


def test_stylize_composes_inside_a_users_jit(random_weights, images):
    content, styles = images

    @jax.jit
    def sweep(w, c, s):
        return jnp.stack([adain_jax.stylize(w, c, s, alpha=a) for a in (0.0, 1.0)])

    out = sweep(random_weights, content, styles[:1])
    assert out.shape == (2, 2, H, W, 3)
    for i, alpha in enumerate((0.0, 1.0)):
        np.testing.assert_allclose(out[i], adain_jax.stylize(random_weights, content, styles[:1], alpha=alpha),
                                   atol=1e-5)


@pytest.mark.parametrize("kwargs,message", [
    (dict(content=np.zeros((2, 8, 8))), "NHWC"),
    (dict(style=np.zeros((3, 8, 8, 3))), "expected 1 or 2"),
    (dict(style_weights=np.ones(2), masks=np.ones((2, H, W, 2))), "not both"),
    (dict(style=np.zeros((3, 8, 8, 3)), style_weights=np.ones(2)), "shape (3,)"),
    (dict(style=np.zeros((2, 8, 8, 3)), masks=np.ones((2, 5, 5, 2))), "masks must have shape"),
    (dict(style=np.zeros((3, 8, 8, 3)), masks=np.ones((2, H, W, 2))), "among 2 styles but 3"),
])
def test_bad_arguments_raise_clear_errors(random_weights, images, kwargs, message):
    content, styles = images
    args = dict(content=content, style=styles[:1])
    args.update(kwargs)
    with pytest.raises(ValueError, match=None) as excinfo:
        adain_jax.stylize(random_weights, args.pop("content"), args.pop("style"), **args)
    assert message in str(excinfo.value)


_SHARDED = textwrap.dedent("""
    import jax, numpy as np, adain_jax
    from adain_jax import transfer
    assert len(jax.local_devices()) == 4
    w = adain_jax.init_weights(0)
    rng = np.random.default_rng(0)
    content, style = rng.random((6, 21, 27, 3), np.float32), rng.random((6, 16, 16, 3), np.float32)
    alpha = np.linspace(0.2, 1.0, 6).astype(np.float32)
    worst = 0.0
    for n in (6, 3):   # neither divides 4
        one = np.asarray(adain_jax.stylize(w, content[:n], style[:n], alpha=alpha[:n]))
        out = transfer.stylize_sharded(w, content[:n], style[:n], alpha=alpha[:n])
        assert out.shape == one.shape
        worst = max(worst, float(np.abs(np.asarray(out) - one).max()))
    mean, std = transfer.style_moments(w, style[:2])
    masks = np.zeros((3, 21, 27, 2), np.float32); masks[:, :, :13, 0] = 1; masks[..., 1] = 1 - masks[..., 0]
    one = adain_jax.stylize_with_moments(w, content[:3], mean, std, masks=masks)
    out = transfer.stylize_with_moments_sharded(w, content[:3], mean, std, masks=masks)
    worst = max(worst, float(np.abs(np.asarray(out) - np.asarray(one)).max()))
    print("WORST", worst)
""")


def test_batches_split_over_four_devices_equal_one_device():
    proc = run_on_devices(_SHARDED, 4)
    worst = float(proc.stdout.split("WORST")[-1])
    assert worst <= 1e-5


# ------------------------------------------------------------------ single images: vmap and grad


def test_vmap_over_single_images_equals_the_batched_call(random_weights):
    rng = np.random.default_rng(3)
    contents = jnp.asarray(rng.random((3, 16, 16, 3), np.float32))
    styles = jnp.asarray(rng.random((3, 12, 20, 3), np.float32))
    one = adain_jax.stylize(random_weights, contents[0], styles[0], alpha=0.7)
    assert one.shape == (16, 16, 3)
    mapped = jax.vmap(lambda c, s: adain_jax.stylize(random_weights, c, s, alpha=0.7))(contents, styles)
    batched = adain_jax.stylize(random_weights, contents, styles, alpha=0.7)
    assert mapped.shape == batched.shape == (3, 16, 16, 3)
    np.testing.assert_allclose(mapped, batched, atol=1e-5)
    np.testing.assert_allclose(one, batched[0], atol=1e-5)


def test_a_single_image_takes_its_masks_without_a_batch_axis(random_weights):
    rng = np.random.default_rng(4)
    content = jnp.asarray(rng.random((16, 16, 3), np.float32))
    styles = jnp.asarray(rng.random((2, 16, 16, 3), np.float32))
    labels = np.zeros((16, 16), np.int32)
    labels[:, 8:] = 1
    one = adain_jax.stylize(random_weights, content, styles, masks=labels)
    batched = adain_jax.stylize(random_weights, content[None], styles, masks=labels[None])
    assert one.shape == (16, 16, 3)
    np.testing.assert_allclose(one, batched[0], atol=1e-5)


def test_grad_through_stylize_matches_finite_differences(random_weights):
    """d/d content and d/d alpha of sum(r * stylize(content)) against central differences.

    `init_weights` biases the decoder's output to 0.5, so no pixel is clipped (checked below) and
    the clip passes every gradient. The network runs in float32: each output value carries a
    rounding error of about eps * |out|, independently, so a central difference of
    sum(r * out) with step h is off by about sqrt(n) * max|r| * 2 eps max|out| / (2 h); the
    tolerance is 4 times that. h = 3e-4 is small enough not to cross the ReLUs' kinks noticeably.
    The content is checked along the gradient's own direction, where the derivative is largest.
    """
    rng = np.random.default_rng(0)
    content = jnp.asarray(0.25 + 0.5 * rng.random((16, 16, 3), np.float32))
    style = jnp.asarray(rng.random((16, 16, 3), np.float32))
    r = rng.standard_normal((16, 16, 3))

    def out(c, alpha):
        return np.asarray(adain_jax.stylize(random_weights, c, style, alpha=alpha), np.float64)

    def loss(c, alpha):
        return jnp.sum(adain_jax.stylize(random_weights, c, style, alpha=alpha) * jnp.asarray(r, jnp.float32))

    base = out(content, 0.7)
    assert base.min() > 0.01 and base.max() < 0.99, "clipping is active: the gradients below would be zero there"
    g_content, g_alpha = jax.grad(loss, argnums=(0, 1))(content, 0.7)
    g_content, g_alpha = np.asarray(g_content, np.float64), float(g_alpha)
    assert np.all(np.isfinite(g_content)) and np.isfinite(g_alpha)

    h = 3e-4
    eps = float(np.finfo(np.float32).eps)
    tol = 4 * np.sqrt(r.size) * np.abs(r).max() * 2 * eps * np.abs(base).max() / (2 * h)

    direction = g_content / np.linalg.norm(g_content)
    plus = content + jnp.asarray(h * direction, jnp.float32)
    minus = content - jnp.asarray(h * direction, jnp.float32)
    fd_content = np.sum(r * (out(plus, 0.7) - out(minus, 0.7))) / (2 * h)
    # The step as float32 actually took it (rounding the inputs moves it by up to half an ulp).
    along = float(np.sum(g_content * (np.asarray(plus, np.float64) - np.asarray(minus, np.float64)))) / (2 * h)
    assert along > 10 * tol  # non-zero, and large enough for the comparison to mean something
    assert abs(fd_content - along) <= tol, (fd_content, along, tol)

    fd_alpha = np.sum(r * (out(content, 0.7 + h) - out(content, 0.7 - h))) / (2 * h)
    assert abs(g_alpha) > 2 * tol
    assert abs(fd_alpha - g_alpha) <= tol, (fd_alpha, g_alpha, tol)
