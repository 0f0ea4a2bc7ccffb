"""Tiled stylization equals the untiled `stylize` for every control; window geometry; halo; --tile.

Also the batch split over several devices (`transfer.stylize_sharded`), in a subprocess with four
simulated CPU devices, since it is what lets big batches and tiles use every device.
"""


import jax
import numpy as np
import pytest

import adain_jax
from adain_jax import cli, tiling
from adain_jax.model import networks

from helpers import write_image

TILE = tiling.min_tile()  # the smallest legal tile: the most windows for a small image
BOUND = 1e-4


def smooth_images(seed, n, h, w):
    """Smooth random images (bilinear upsampling of noise), so the outputs are not all clipped."""
    rng = np.random.default_rng(seed)
    small = rng.random((n, max(h // 8, 2), max(w // 8, 2), 3), np.float32)
    return np.asarray(jax.image.resize(small, (n, h, w, 3), "linear"))


def _controls(name, n, h, w):
    rng = np.random.default_rng(1)
    if name == "alpha":
        return {"alpha": np.linspace(0.5, 1.0, n).astype(np.float32)}, 1
    if name == "interpolation":
        return {"style_weights": np.asarray([0.2, 0.5, 0.3], np.float32), "alpha": 0.8}, 3
    if name == "preserve_color":
        return {"preserve_color": True}, 1
    if name == "masks":  # a soft and a hard region crossing every tile boundary
        yy, xx = np.mgrid[:h, :w]
        hard = ((yy - h / 3) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 3) ** 2).astype(np.float32)
        return {"masks": np.broadcast_to(np.stack([hard, 1 - hard], -1), (n, h, w, 2)).copy()}, 2
    if name == "label_map":
        return {"masks": rng.integers(0, 3, (n, h // 7 + 1, w // 9 + 1)).repeat(7, 1).repeat(9, 2)[:, :h, :w]}, 3
    raise ValueError(name)


def _compare(weights, name, h, w, n=1):
    content = smooth_images(0, n, h, w)
    controls, k = _controls(name, n, h, w)
    style = smooth_images(2, n if k == 1 else k, 40, 48)
    expected = np.asarray(adain_jax.stylize(weights, content, style, **controls))
    inside = np.mean((expected > 0) & (expected < 1))
    assert inside > 0.5, f"only {inside:.0%} of pixels unclipped: the comparison would be vacuous"
    tiling._window_stylize.clear_cache()
    tiling._window_moments.clear_cache()
    got = tiling.stylize_tiled(weights, content, style, tile=TILE, **controls)
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() <= BOUND
    # several windows, every one of the same shape: one compiled program per pass
    assert len(tiling.windows(h, w, TILE)) >= 4 and len(tiling.windows(h, w, TILE, decode=False)) >= 4
    assert tiling._window_stylize._cache_size() == 1
    assert tiling._window_moments._cache_size() == 1


# Default suite: both axes split (2 x 2 windows) at an odd size with the plain path (per-image
# alpha) and the masked statistics; every control at two odd sizes in the slow suite.
@pytest.mark.parametrize("name", ["alpha", "masks"])
def test_tiled_equals_untiled(random_weights, name):
    _compare(random_weights, name, 145, 151, n=2 if name == "alpha" else 1)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(157, 171), (203, 149)])
@pytest.mark.parametrize("name", ["alpha", "interpolation", "preserve_color", "masks", "label_map"])
def test_tiled_equals_untiled_for_every_control(random_weights, name, size):
    _compare(random_weights, name, *size)


def test_input_normalisation_tiles_and_skip_decoders_are_refused():
    """ImageNet input normalisation is per pixel, so it tiles exactly; skips are for untiled runs only."""
    from adain_jax.model.variants import DecoderVariant

    _compare(adain_jax.init_weights(0, DecoderVariant(input_norm="imagenet")), "alpha", 145, 151)
    content, style = smooth_images(0, 1, 40, 40), smooth_images(1, 1, 32, 32)
    skips = adain_jax.init_weights(0, DecoderVariant("add", "content"))
    with pytest.raises(tiling.UntiledVariantError, match=r"skip connections only \(these weights: skip=add \(content\)\)$"):
        tiling.stylize_tiled(skips, content, style, tile=TILE)


@pytest.mark.parametrize("size", [1000, 1001, 1007, 1032, 8 * 19, 8 * 19 + 1])
def test_windows_partition_the_image_with_one_shape_and_enough_halo(size):
    for decode in (True, False):
        start_halo, end_halo = tiling.halo(decode)
        feat = -(-size // 8)
        axis = [r for r, _ in tiling.windows(size, 16, TILE, decode)]
        assert len({(w.length, w.flen) for w in axis}) == 1
        assert [w.centre[0] for w in axis] == [0] + [w.centre[1] for w in axis[:-1]]  # a partition...
        assert axis[-1].centre[1] == feat  # ... of the whole feature grid
        for w in axis:
            assert w.start == 8 * w.fstart and w.fstart + w.flen <= feat
            assert w.start + w.length <= size and w.length <= TILE
            assert w.centre[0] < w.centre[1]
            # an inner edge keeps its halo from the centre; an image border needs none
            assert w.fstart == 0 or w.centre[0] - w.fstart >= start_halo
            assert w.start + w.length == size or w.fstart + w.flen - w.centre[1] >= end_halo
        assert axis[-1].start + axis[-1].length == size


@pytest.mark.parametrize("r", [1, 8])
def test_encoder_halo_is_what_an_inner_window_edge_actually_spoils(random_weights, r):
    """Feature rows that differ from the whole image's next to the inner edges of a window that
    starts on the /8 grid and has the tiles' length: the derived encoder halo, no more (r = 1 is
    the worst parity: a partial pooling window at every level)."""
    encode = jax.jit(lambda x: networks.encode(random_weights["encoder"], x)["relu4_1"])
    h, L, ws = 8 * 20 + r, 12, 3
    image = smooth_images(5, 1, h, 16) + np.random.default_rng(0).random((1, h, 16, 3), np.float32) * 0.1
    full = np.asarray(encode(image))[0, ws:ws + L]
    window = np.asarray(encode(image[:, 8 * ws:8 * ws + 8 * (L - 1) + r]))[0]
    wrong = np.nonzero(np.abs(window - full).max(axis=(1, 2)) > 1e-5)[0]
    start, end = tiling.halo(decode=False)
    assert (wrong < L // 2).sum() == start
    assert (wrong >= L // 2).sum() <= end and ((wrong >= L // 2).sum() == end) == (r != 8)


def test_too_small_a_tile_is_refused_with_its_minimum(random_weights, tmp_path, capsys):
    content, style = smooth_images(0, 1, 40, 40), smooth_images(1, 1, 32, 32)
    with pytest.raises(ValueError, match=f"at least {TILE}"):
        tiling.stylize_tiled(random_weights, content, style, tile=TILE - 8)
    write_image(tmp_path / "c.png", 40, 40)
    status = cli.main(["stylize", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "c.png"),
                       "--tile", "64", "--output", str(tmp_path / "out"), "--weights", str(tmp_path / "none")])
    err = capsys.readouterr().err
    assert status == 2 and "--tile 64" in err and f"at least {TILE}" in err
    assert not (tmp_path / "out").exists()


def test_an_explicit_tile_with_a_skip_decoder_is_refused_before_any_image(tmp_path, capsys):
    from adain_jax.io import weights as weights_lib
    from adain_jax.model import networks, variants

    weights_dir = weights_lib.save_weights(networks.init_weights(0, variants.DecoderVariant(skip="add")),
                                           tmp_path / "w")
    write_image(tmp_path / "c.png", 40, 40)
    status = cli.main(["stylize", "--content", str(tmp_path / "c.png"), "--style", str(tmp_path / "c.png"),
                       "--tile", str(TILE), "--output", str(tmp_path / "out"), "--weights", str(weights_dir)])
    err = capsys.readouterr().err
    assert status == 2 and "skip connections only" in err and "pass --tile 0" in err
    assert not (tmp_path / "out").exists()


def test_auto_tiles_only_what_does_not_fit():
    assert tiling.available_bytes() > 0
    assert tiling.auto_tile(1, 512, 512, budget=10 ** 12) == 0
    tile = tiling.auto_tile(1, 16384, 16384, budget=2 * 10 ** 9)
    assert tile % 8 == 0 and TILE <= tile < 16384
    assert tile * tile * tiling.BYTES_PER_PIXEL <= 2 * 10 ** 9
    assert tiling.auto_tile(1, 16384, 16384, budget=1) == TILE  # never below the minimum


def test_colour_statistics_are_the_targets_of_coral():
    """`ops.coral_to_stats(source, *colour_stats(target))` is `ops.coral(source, target)`."""
    from adain_jax.model import ops

    target, source = smooth_images(6, 2, 61, 47), smooth_images(7, 2, 30, 20)
    np.testing.assert_allclose(ops.coral_to_stats(source, *tiling.colour_stats(target)),
                               ops.coral(source, target), atol=1e-5)


@pytest.mark.slow
def test_cli_tile_writes_the_untiled_image(weights_dir, tmp_path):
    content = write_image(tmp_path / "c.png", 43, 157, seed=3)
    style = write_image(tmp_path / "s.png", 32, 32, seed=4)
    for tile in ("0", str(TILE)):
        assert cli.main(["stylize", "--content", str(content), "--style", str(style), "--weights", str(weights_dir),
                         "--content-size", "0", "--style-size", "0", "--tile", tile, "--alpha", "0.7",
                         "--output", str(tmp_path / tile), "--ext", "png"]) == 0
    from PIL import Image

    untiled = np.asarray(Image.open(tmp_path / "0" / "c_stylized_s.png"), np.int16)
    tiled = np.asarray(Image.open(tmp_path / str(TILE) / "c_stylized_s.png"), np.int16)
    assert np.abs(untiled - tiled).max() <= 1  # equal up to a rounding flip of the 8-bit quantisation
