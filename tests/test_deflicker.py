"""Flow-guided blending: off at strength 0, first frame untouched, flicker on moving content reduced
(measured by the warping error), and nothing blended where the flow fails the occlusion check."""

from __future__ import annotations

import numpy as np
import pytest

from adain_jax.video import deflicker, flicker

from test_flicker import panning


def noisy(frames, seed=0, sigma=12):
    rng = np.random.default_rng(seed)
    return [np.clip(f.astype(int) + rng.normal(0, sigma, f.shape), 0, 255).astype(np.uint8) for f in frames]


def test_strength_0_is_identity_and_the_first_frame_is_untouched():
    frames = panning()
    stylized = noisy(frames)
    off = deflicker.FlowBlend(0.0)
    assert all(off(c, s) is s for c, s in zip(frames, stylized))
    on = deflicker.FlowBlend(0.7)
    np.testing.assert_array_equal(on(frames[0], stylized[0]), stylized[0])
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        deflicker.FlowBlend(1.0)


def test_blending_reduces_the_warping_error_of_flickering_frames_that_move_with_the_content():
    frames = panning(8)
    stylized = noisy(frames)  # per-frame noise = flicker on top of consistent motion
    blend = deflicker.FlowBlend(0.7)
    blended = [blend(c, s) for c, s in zip(frames, stylized)]
    before = flicker.warping_error(stylized, frames).mean
    after = flicker.warping_error(blended, frames).mean
    assert after < 0.5 * before


def test_where_the_flow_fails_the_check_the_frame_is_kept():
    # A scene cut: unrelated content, so the forward-backward check rejects (almost) every pixel.
    rng = np.random.default_rng(1)
    a = panning(1)[0]
    b = rng.integers(0, 256, a.shape, dtype=np.uint8)
    blend = deflicker.FlowBlend(0.9)
    blend(a, a)
    out = blend(b, b)
    assert np.mean(out == b) > 0.9
