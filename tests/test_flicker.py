"""The warping error (Lai et al. 2018) and its occlusion mask: zero for consistent motion, growing
with flicker, and the forward-backward check dropping exactly the pixels whose flows disagree."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from adain_jax.video import flicker


def texture(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 4, w // 4, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BICUBIC))


def panning(n=6, shift=2):
    """A camera pan: each frame is the previous one moved ``shift`` pixels left (crops of a wide image)."""
    wide = texture(64, 80 + shift * n)
    return [wide[:, shift * i:shift * i + 80] for i in range(n)]


def test_static_video_has_zero_warping_error():
    frame = texture()
    result = flicker.warping_error([frame] * 4)
    assert result.mean == 0.0 and result.pairs.shape == (3,)


def test_consistent_motion_scores_near_zero_and_flicker_scores_higher():
    frames = panning()
    steady = flicker.warping_error(frames).mean
    # The same motion with brightness jumping between frames: the flow comes from the clean video.
    flickering = [np.clip(f.astype(int) + (12 if i % 2 else -12), 0, 255).astype(np.uint8) for i, f in enumerate(frames)]
    jumpy = flicker.warping_error(flickering, frames).mean
    # 24 levels of jump on each channel: 3 * (24 / 255)^2 = 0.0266 where the frames do not clip.
    assert steady < 2e-3
    assert jumpy > 10 * steady and jumpy == pytest.approx(3 * (24 / 255) ** 2, rel=0.25)


def test_warp_follows_the_flow():
    image = texture().astype(np.float32) / 255
    flow = np.zeros(image.shape[:2] + (2,), np.float32)
    flow[..., 0] = 3.0  # sample three pixels to the right
    np.testing.assert_allclose(flicker.warp(image, flow)[:, :-3], image[:, 3:], atol=1e-6)


def test_occlusion_mask_drops_inconsistent_and_out_of_frame_pixels():
    h, w = 20, 30
    forward = np.zeros((h, w, 2), np.float32)
    forward[..., 0] = 2.0
    backward = -forward.copy()
    mask = flicker.non_occluded(forward, backward)
    assert mask[:, :w - 3].all()  # consistent, and the target stays inside
    assert not mask[:, w - 2:].any()  # p + 2 leaves the frame
    backward[5:10, 10:20] = 0.0  # there the way back does not return: occluded
    mask = flicker.non_occluded(forward, backward)
    assert not mask[5:10, 9:18].any() and mask[12:, :w - 3].all()


def test_mismatched_lengths_are_reported():
    frames = panning(4)
    with pytest.raises(ValueError, match="more frames"):
        flicker.warping_error(frames[:3], frames)
    with pytest.raises(ValueError, match="fewer"):
        flicker.warping_error(frames, frames[:3])
