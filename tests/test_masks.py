"""Tests for adain_jax.io.masks: mask and label images read, resized and checked; the masks front ends pass on."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adain_jax.io.images import ImageError
from adain_jax.io.masks import load_label_map, load_mask, masks_from_file


def _saved(tmp_path, image: Image.Image, name: str, **kwargs):
    path = tmp_path / name
    image.save(path, **kwargs)
    return path


def test_load_mask_nearest_resize_and_values(tmp_path):
    mask = np.zeros((2, 4), np.uint8)
    mask[:, 2:] = 255
    mask[0, 0] = 128
    path = _saved(tmp_path, Image.fromarray(mask, "L").convert("RGB"), "m.png")
    out = load_mask(path, 4, 8)
    assert out.dtype == np.float32 and out.shape == (4, 8)
    expected = np.repeat(np.repeat(mask, 2, 0), 2, 1).astype(np.float32) / 255
    np.testing.assert_array_equal(out, expected)  # NEAREST: no in-between values
    transparent = Image.new("RGBA", (3, 3), (0, 0, 0, 0))
    np.testing.assert_array_equal(load_mask(_saved(tmp_path, transparent, "t.png"), 2, 5), np.ones((2, 5)))
    with pytest.raises(ValueError):
        load_mask(path, 0, 3)


def test_load_label_map(tmp_path):
    labels = np.array([[0, 1], [2, 1]], np.uint8)
    p = Image.fromarray(labels, "P")
    p.putpalette([10, 10, 10, 200, 0, 0, 0, 200, 0])  # colours are irrelevant: indices are labels
    out = load_label_map(_saved(tmp_path, p, "p.png"), 4, 6, num_labels=3)
    assert out.dtype == np.int32 and out.shape == (4, 6)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(labels, 2, 0), 3, 1))
    grey_rgb = Image.fromarray(labels * 1, "L").convert("RGB")
    np.testing.assert_array_equal(load_label_map(_saved(tmp_path, grey_rgb, "g.png"), 2, 2, 3), labels)


def test_load_label_map_errors(tmp_path):
    path = _saved(tmp_path, Image.fromarray(np.array([[0, 1, 5, 7]], np.uint8), "L"), "l.png")
    with pytest.raises(ImageError) as info:
        load_label_map(path, 1, 4, num_labels=3)
    assert str(info.value) == (
        f"{path}: label values must be 0..2 for 3 labels, but the image holds 0, 1, 5, 7 "
        "(out of range: 5, 7)"
    )
    colour = _saved(tmp_path, Image.new("RGB", (2, 2), (1, 2, 3)), "c.png")
    with pytest.raises(ImageError, match="single-channel"):
        load_label_map(colour, 2, 2, 3)


def test_masks_from_file_two_styles_is_a_binary_pair_and_more_is_a_label_map(tmp_path):
    grey = np.array([[0, 127, 128, 255]], np.uint8)  # 128/255 is the first value at or over one half
    path = _saved(tmp_path, Image.fromarray(grey, "L"), "m.png")
    two = masks_from_file(path, 2, 1, 4)
    assert two.shape == (1, 1, 4, 2) and two.dtype == np.float32
    np.testing.assert_array_equal(two[0, 0], [[0, 1], [0, 1], [1, 0], [1, 0]])
    labels = _saved(tmp_path, Image.fromarray(np.array([[0, 1, 2, 1]], np.uint8), "L"), "l.png")
    three = masks_from_file(labels, 3, 2, 8)
    assert three.shape == (1, 2, 8) and three.dtype == np.int32
    np.testing.assert_array_equal(three[0, 1], [0, 0, 1, 1, 2, 2, 1, 1])
