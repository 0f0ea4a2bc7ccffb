"""adain_jax.controls: the rules of the style controls, for front ends (Controls) and for arrays."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax import controls
from adain_jax.controls import ControlError, Controls


@pytest.mark.parametrize("kwargs,rule,words", [
    ({"num_styles": 2, "style_weights": (1, 1), "masked": True}, controls.BOTH, "not both"),
    ({"num_styles": 1, "masked": True}, controls.TOO_FEW, "at least two styles"),
    ({"num_styles": 2, "style_weights": (1, 2, 3)}, controls.COUNT, "3 style weights for 2 styles"),
    ({"num_styles": 3}, controls.UNCOMBINED, "3 styles for one image"),
    ({"num_styles": 2, "masked": True, "crop": True}, controls.MASK_CROP, "cannot be combined with cropping"),
])
def test_controls_refuse_what_cannot_be_combined_naming_the_rule_and_no_flag(kwargs, rule, words):
    with pytest.raises(ControlError) as info:
        Controls(**kwargs)
    assert info.value.rule == rule and words in str(info.value)
    assert "--" not in str(info.value)
    assert isinstance(info.value, ValueError)  # callers that catch ValueError keep working


def test_controls_are_frozen_values_with_the_output_names_of_the_cli():
    ctl = Controls(num_styles=2, style_weights=[0.3, 0.7], alpha=0.5)
    assert ctl.style_weights == (0.3, 0.7) and ctl.combined
    assert ctl == Controls(num_styles=2, style_weights=(0.3, 0.7), alpha=0.5)
    with pytest.raises(AttributeError):
        ctl.alpha = 1.0
    np.testing.assert_array_equal(ctl.weights_array(), np.array([0.3, 0.7], np.float32))
    assert ctl.output_name("photo", ["a", "b"], ".PNG") == "photo_interpolation.png"
    assert Controls(num_styles=2, masked=True).output_name("photo", ["a", "b"], "jpg") == "photo_stylized_a_b.jpg"
    assert Controls().output_name("photo", ["a"], "jpg") == "photo_stylized_a.jpg"
    assert Controls().weights_array() is None and not Controls().combined


def test_array_rules():
    controls.check_exclusive(None, np.ones(1))
    with pytest.raises(ControlError, match="not both"):
        controls.check_exclusive(np.ones(2), np.ones(1))
    controls.check_style_batch("style", 1, 4)
    with pytest.raises(ControlError, match="style has batch 3; expected 1 or 4"):
        controls.check_style_batch("style", 3, 4)
    controls.check_same_size([(4, 4, 3), (4, 4, 3)], ["a", "b"], "preserve_color")
    with pytest.raises(ControlError) as info:
        controls.check_same_size([(4, 4, 3), (4, 5, 3)], ["a.jpg", "b.jpg"], "preserve_color")
    assert info.value.rule == controls.STYLE_SIZES and info.value.detail["names"] == ["a.jpg", "b.jpg"]
    assert str(info.value) == "with preserve_color, combined styles must have the same size after resizing: a.jpg, b.jpg"
    np.testing.assert_allclose(controls.mixing_weights([1, 3], 2), [0.25, 0.75])
    with pytest.raises(ControlError, match=r"shape \(3,\) for 3 styles"):
        controls.mixing_weights([1, 3], 3)


def test_paired_styles_put_every_content_with_its_styles_content_major():
    style = np.arange(3)[:, None, None, None] * np.ones((3, 1, 1, 1))  # style k is filled with k
    paired, k = controls.paired_styles(style, 2, combined=True)
    assert k == 3 and paired[:, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2]
    paired, k = controls.paired_styles(style[:2], 2, combined=False)
    assert k == 1 and paired[:, 0, 0, 0].tolist() == [0, 1]


@pytest.mark.parametrize("host", [True, False])
def test_region_masks_sample_a_label_map_or_float_masks_onto_the_grid(host):
    labels = np.array([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 5, 5], [2, 2, 5, 5]]], np.int32)  # 5: no style
    wrap = (lambda a: a) if host else jnp.asarray
    got = np.asarray(controls.region_masks(wrap(labels), 3, (2, 4, 4, 3), (2, 2)))
    assert got.shape == (2, 2, 2, 3) and got.dtype == np.float32
    np.testing.assert_array_equal(got[0, :, :, 0], [[1, 0], [0, 0]])
    np.testing.assert_array_equal(got[1, :, :, 1], [[0, 1], [0, 0]])
    np.testing.assert_array_equal(got[0, 1, 1], [0, 0, 0])
    one_hot = (labels[..., None] == np.arange(3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(controls.region_masks(wrap(one_hot), 3, (2, 4, 4, 3), (2, 2))), got)
    with pytest.raises(ControlError, match=r"masks must have shape \(N, 4, 4, K\)"):
        controls.region_masks(wrap(labels[:, :3]), 3, (1, 4, 4, 3), (2, 2))
    with pytest.raises(ControlError, match="masks select among 3 styles but 2 style images"):
        controls.region_masks(wrap(one_hot), 2, (1, 4, 4, 3), (2, 2))
