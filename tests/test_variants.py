"""adain_jax.model.variants: the MVA study's decoders (skips, input normalisation) and batch statistics.

Shapes and parameter counts from the layer table's arithmetic; skips that change what they should;
ImageNet normalisation equal to normalising by hand; batch statistics equal to instance statistics
exactly when every style in the batch is the same; the variant travels with the weights (weights
directory, training checkpoint) so a loaded decoder stylizes like the one in memory.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adain_jax
from adain_jax import runner, transfer
from adain_jax.io import weights as weights_io
from adain_jax.model import losses, networks, ops, variants
from adain_jax.model.variants import DecoderVariant

ADD_C = DecoderVariant("add", "content")
ADD_S = DecoderVariant("add", "style")
CAT_C = DecoderVariant("concat", "content")
CAT_S = DecoderVariant("concat", "style")
CAT_B = DecoderVariant("concat", "both")
IMNET = DecoderVariant(input_norm="imagenet")

# The plain decoder's convolutions (in, out), conv4_1 .. conv1_1, all 3x3: written out here, not read
# from the code under test.
PLAIN_LAYERS = [(512, 256), (256, 256), (256, 256), (256, 256), (256, 128), (128, 128), (128, 64), (64, 64), (64, 3)]


def count(layers):
    return sum(9 * cin * cout + cout for cin, cout in layers)


# One content and one style shape throughout, so a variant's compiled `stylize` serves several tests;
# 20 x 28 is not a multiple of 8 (relu4_1 is 3 x 4, the decoder's maps 24 x 32 and up).
H, W, HS = 20, 28, 16


def images(seed, n, h, w):
    rng = np.random.default_rng(seed)
    small = rng.random((n, max(h // 4, 2), max(w // 4, 2), 3), np.float32)
    return np.asarray(jax.image.resize(small, (n, h, w, 3), "linear"))


@pytest.fixture(scope="module")
def weights_by_variant():
    return {v: adain_jax.init_weights(3, v) for v in (variants.PLAIN, ADD_C, ADD_S, CAT_C, CAT_S, CAT_B, IMNET)}


def n_params(tree):
    return sum(int(np.size(x)) for x in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------------- the variant


def test_variant_values_are_checked_and_named():
    for kwargs, name in (({"skip": "sum"}, "skip"), ({"skip_source": "both!"}, "skip_source"),
                         ({"input_norm": "vgg"}, "input_norm")):
        with pytest.raises(ValueError, match=name) as info:
            DecoderVariant(**kwargs)
        assert repr(next(iter(kwargs.values()))) in str(info.value)
    with pytest.raises(ValueError, match="'layer'"):
        variants.check_statistics("layer")
    # The source of a decoder without skips means nothing: one variant, hence one compiled program.
    assert DecoderVariant("none", "style") == variants.PLAIN and DecoderVariant().is_plain
    assert DecoderVariant.from_json(CAT_S.to_json()) == CAT_S
    assert DecoderVariant.from_json({"skip": "add", "lr": 1.0}) == ADD_C  # a training config: other keys ignored
    assert DecoderVariant.from_json(None) == variants.PLAIN


def test_variant_is_static_in_the_weights_tree(weights_by_variant):
    w = weights_by_variant[CAT_S]
    assert w["variant"] == CAT_S and "variant" not in weights_by_variant[variants.PLAIN]
    assert len(jax.tree.leaves(w)) == len(jax.tree.leaves(weights_by_variant[variants.PLAIN]))
    mapped = jax.tree.map(lambda x: x + 1, w)
    assert variants.of(mapped) == CAT_S
    assert jax.tree.structure(w) != jax.tree.structure(weights_by_variant[CAT_C])  # jit keys on it


# ----------------------------------------------------------------------------------- shapes and counts


def test_parameter_counts_follow_the_layer_table(weights_by_variant):
    plain = count(PLAIN_LAYERS)
    assert plain == 3_505_219
    # concat: conv3_2, conv2_2 and conv1_2 output half their channels; the skip gives the other half,
    # so every layer's in_channels is unchanged.
    halved = list(PLAIN_LAYERS)
    halved[3], halved[5], halved[7] = (256, 128), (128, 64), (64, 32)
    assert count(halved) == plain - (9 * (256 * 128 + 128 * 64 + 64 * 32) + 128 + 64 + 32) == 3_117_923
    for v, expected in ((variants.PLAIN, plain), (ADD_C, plain), (ADD_S, plain), (IMNET, plain),
                        (CAT_C, count(halved)), (CAT_S, count(halved)), (CAT_B, count(halved))):
        assert n_params(weights_by_variant[v]["decoder"]) == expected, v
        specs = variants.decoder_specs(v)
        assert [(s.in_channels, s.out_channels) for s in specs] == (halved if v.skip == "concat" else PLAIN_LAYERS)


def test_skip_decoder_forward_shapes_at_a_size_that_is_not_a_multiple_of_8(weights_by_variant):
    w = weights_by_variant[CAT_C]
    content = images(0, 1, H, W)
    feats = networks.encode(w["encoder"], content)
    assert feats["relu3_1"].shape == (1, 5, 7, 256) and feats["relu2_1"].shape == (1, 10, 14, 128)
    assert feats["relu1_1"].shape == (1, H, W, 64) and feats["relu4_1"].shape == (1, 3, 4, 512)
    skips = variants.skip_features(CAT_C, feats)
    out = networks.decode(w["decoder"], feats["relu4_1"], variant=CAT_C, skips=skips)
    assert out.shape == (1, 24, 32, 3)  # 8x the relu4_1 map; stylize crops it back
    assert adain_jax.stylize(w, content, images(1, 1, HS, HS)).shape == (1, H, W, 3)
    with pytest.raises(ValueError, match="skip features"):
        networks.decode(w["decoder"], feats["relu4_1"], variant=CAT_C)


def test_add_skips_of_zeros_are_the_plain_decoder_and_real_skips_change_it(weights_by_variant):
    w = weights_by_variant[ADD_C]
    feats = networks.encode(w["encoder"], images(0, 1, 16, 16))
    zeros = {k: jnp.zeros_like(v) for k, v in feats.items()}
    plain = networks.decode(w["decoder"], feats["relu4_1"])
    np.testing.assert_array_equal(networks.decode(w["decoder"], feats["relu4_1"], variant=ADD_C, skips=zeros), plain)
    skipped = networks.decode(w["decoder"], feats["relu4_1"], variant=ADD_C, skips=feats)
    assert np.abs(np.asarray(skipped) - np.asarray(plain)).max() > 1e-3


def test_concat_merge_puts_the_pair_means_of_the_skip_beside_the_input():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 5, 6, 4)).astype(np.float32)
    skip = rng.standard_normal((1, 4, 5, 8)).astype(np.float32)  # smaller: padded by its last row/column
    got = np.asarray(variants.merge(jnp.asarray(x), jnp.asarray(skip), "concat"))
    padded = np.concatenate([skip, skip[:, -1:]], axis=1)
    padded = np.concatenate([padded, padded[:, :, -1:]], axis=2)
    expected = np.concatenate([x, (padded[..., 0::2] + padded[..., 1::2]) / 2], axis=-1)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(variants.merge(jnp.asarray(x[..., :4]), jnp.asarray(skip[..., :4]), "add")),
                                  x + padded[..., :4])


# ----------------------------------------------------------------------------------- inference


def test_style_skips_use_the_style_features_resized_to_the_content(weights_by_variant):
    """Skips of the style: its relu1..3 features, nearest-resized to the content's, enter the decoder."""
    w = weights_by_variant[ADD_S]
    content, style = images(0, 1, H, W), images(1, 1, HS, HS)
    got = adain_jax.stylize(w, content, style)
    cf, sf = networks.encode(w["encoder"], content), networks.encode(w["encoder"], style)
    skips = {k: ops.resize_nearest(sf[k], *cf[k].shape[1:3]) for k in ("relu1_1", "relu2_1", "relu3_1")}
    assert skips["relu2_1"].shape == (1, 10, 14, 128)
    t = ops.adain(cf["relu4_1"], *ops.moments(sf["relu4_1"]))
    expected = jnp.clip(networks.decode(w["decoder"], t, variant=ADD_S, skips=skips)[:, :H, :W], 0, 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # masks give each region its style's skip features, as its AdaIN target: all-first = the first style
    styles = np.concatenate([style, images(2, 1, HS, HS)])
    first = np.zeros((1, H, W, 2), np.float32)
    first[..., 0] = 1
    np.testing.assert_allclose(adain_jax.stylize(w, content, styles, masks=first), got, atol=1e-5)
    with pytest.raises(ValueError, match="use stylize"):  # raised while tracing: nothing is compiled
        transfer.stylize_with_moments(w, content, np.zeros((1, 512), np.float32), np.ones((1, 512), np.float32))


@pytest.mark.slow
def test_every_control_runs_with_a_style_skip_variant(weights_by_variant):
    w = weights_by_variant[CAT_B]
    content, styles = images(0, 1, H, W), images(1, 2, HS, HS)
    single = adain_jax.stylize(w, content, styles[:1])
    # interpolation mixes the styles' skip features with the same weights as their AdaIN targets
    np.testing.assert_allclose(adain_jax.stylize(w, content, styles, style_weights=[1.0, 0.0]), single, atol=1e-5)
    for kwargs in ({"alpha": 0.3}, {"preserve_color": True}, {"style_weights": [0.3, 0.7]}):
        style = styles if "style_weights" in kwargs else styles[:1]
        out = np.asarray(adain_jax.stylize(w, content, style, **kwargs))
        assert out.shape == (1, H, W, 3) and np.isfinite(out).all()
        assert np.abs(out - np.asarray(single)).max() > 1e-4


def test_imagenet_input_norm_is_the_plain_network_on_normalised_images(weights_by_variant):
    w = weights_by_variant[IMNET]
    content, style = images(0, 1, H, W), images(1, 1, HS, HS)
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    cf = networks.encode(w["encoder"], (content - mean) / std)["relu4_1"]
    sf = networks.encode(w["encoder"], (style - mean) / std)["relu4_1"]
    expected = np.clip(np.asarray(networks.decode(w["decoder"], ops.adain(cf, *ops.moments(sf))))[:, :H, :W], 0, 1)
    np.testing.assert_allclose(adain_jax.stylize(w, content, style), expected, atol=1e-5)
    # ... in the loss too: c, s and the decoded image all normalised before the VGG
    c, s = images(2, 2, 16, 16), images(3, 2, 16, 16)
    loss, aux = losses.adain_loss(w["decoder"], w["encoder"], c, s, variant=IMNET)
    cf = networks.encode(w["encoder"], (c - mean) / std)
    sf = networks.encode(w["encoder"], (s - mean) / std)
    t = ops.adain(cf["relu4_1"], *ops.moments(sf["relu4_1"]))
    gf = networks.encode(w["encoder"], (networks.decode(w["decoder"], t) - mean) / std)
    np.testing.assert_allclose(aux["content_loss"], losses.mse(gf["relu4_1"], t), rtol=1e-5)
    np.testing.assert_allclose(aux["style_loss"], losses.style_loss(gf, sf), rtol=1e-5)
    plain_loss, _ = losses.adain_loss(w["decoder"], w["encoder"], c, s)
    assert abs(float(loss) - float(plain_loss)) > 1e-3 * abs(float(plain_loss))


# ----------------------------------------------------------------------------------- batch statistics


def test_batch_statistics_differ_from_instance_exactly_when_the_styles_differ(weights_by_variant):
    w = weights_by_variant[variants.PLAIN]
    content = images(0, 2, 16, 16)
    one_style = np.repeat(images(1, 1, 16, 16), 2, axis=0)
    two_styles = images(2, 2, 16, 16)
    loss = jax.jit(losses.adain_loss, static_argnames=("statistics",))
    for styles, same in ((one_style, True), (two_styles, False)):
        (li, ai), (lb, ab) = (loss(w["decoder"], w["encoder"], content, styles, statistics=s)
                              for s in ("instance", "batch"))
        for a, b in ((li, lb), (ai["content_loss"], ab["content_loss"]), (ai["style_loss"], ab["style_loss"])):
            if same:
                np.testing.assert_allclose(a, b, rtol=1e-6)
            else:
                assert abs(float(a) - float(b)) > 1e-3 * abs(float(a))
    with pytest.raises(ValueError, match="statistics"):
        losses.adain_loss(w["decoder"], w["encoder"], content, two_styles, statistics="group")


# ----------------------------------------------------------------------------------- weights on disk


@pytest.mark.parametrize("variant", [CAT_C, ADD_S])
def test_a_saved_variant_loads_back_and_stylizes_identically(weights_by_variant, variant, tmp_path):
    w = weights_by_variant[variant]
    adain_jax.save_weights(w, tmp_path / "w", {"note": "random"})
    manifest = json.loads((tmp_path / "w" / weights_io.MANIFEST).read_text())
    assert manifest["variant"] == {"skip": variant.skip, "skip_source": variant.skip_source, "input_norm": "none"}
    loaded = adain_jax.load_weights(tmp_path / "w")
    assert variants.of(loaded) == variant
    content, style = images(0, 1, H, W), images(1, 1, HS, HS)
    np.testing.assert_array_equal(adain_jax.stylize(loaded, content, style), adain_jax.stylize(w, content, style))


def test_a_variant_record_that_does_not_match_the_arrays_is_reported(weights_by_variant, tmp_path):
    adain_jax.save_weights(weights_by_variant[CAT_C], tmp_path / "w")
    manifest = tmp_path / "w" / weights_io.MANIFEST
    record = json.loads(manifest.read_text())
    record["variant"]["skip"] = "add"  # add-decoder shapes expected, concat arrays present
    manifest.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="decoder/conv3_2/kernel has shape"):
        adain_jax.load_weights(tmp_path / "w")
    record["variant"]["skip"] = "sideways"
    manifest.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="sideways"):
        adain_jax.load_weights(tmp_path / "w")


def test_runner_feeds_style_images_to_a_style_skip_decoder_and_never_auto_tiles_it(weights_by_variant, tmp_path):
    from helpers import write_image

    w = weights_by_variant[ADD_S]
    style_path = write_image(tmp_path / "s.png", HS, HS, seed=5)
    stylizer = runner.Stylizer(w, content_size=0, style_size=0, tile="auto")
    assert stylizer.tile_for(1, 100_000, 100_000) == 0  # too big to fit, but a skip decoder is not tiled
    content = images(0, 1, H, W)[0]
    got = stylizer.run(content, [style_path])
    expected = adain_jax.stylize(w, content[None], stylizer.style(style_path)[None])[0]
    np.testing.assert_array_equal(got, np.asarray(expected))


def test_the_cli_rebuilds_the_variant_from_the_weights_directory_alone(weights_by_variant, tmp_path):
    """``adain-jax stylize --weights DIR`` with no variant flag gives what `stylize` gives in memory."""
    from PIL import Image

    from adain_jax import cli
    from adain_jax.io import images as image_io
    from helpers import write_image

    w = weights_by_variant[ADD_S]
    adain_jax.save_weights(w, tmp_path / "w")
    content = write_image(tmp_path / "c.png", H, W, seed=6)
    style = write_image(tmp_path / "s.png", HS, HS, seed=7)
    assert cli.main(["stylize", "--weights", str(tmp_path / "w"), "--content", str(content), "--style", str(style),
                     "--content-size", "0", "--style-size", "0", "--output", str(tmp_path / "out"),
                     "--ext", "png"]) == 0
    written = np.asarray(Image.open(tmp_path / "out" / "c_stylized_s.png"), np.float64) / 255
    expected = np.asarray(adain_jax.stylize(w, image_io.load_image(content, 0)[None],
                                            image_io.load_image(style, 0)[None]))[0]
    assert np.abs(written - expected).max() <= 1 / 255 + 1e-6  # 8-bit quantisation
    plain = np.asarray(adain_jax.stylize(weights_by_variant[variants.PLAIN], image_io.load_image(content, 0)[None],
                                         image_io.load_image(style, 0)[None]))[0]
    assert np.abs(written - plain).max() > 5 / 255  # not the plain decoder's picture
