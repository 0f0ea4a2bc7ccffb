"""Flicker metric: the warping error of Lai et al. (ECCV 2018), with OpenCV's DIS optical flow.

    E_pair(t) = sum_p M_t(p) * ||V_t(p) - W(V_{t+1})(p)||^2 / sum_p M_t(p)
    E_warp    = mean over t of E_pair(t)

``V`` is the stylized video (RGB in [0, 1], the squared norm summed over the three channels), ``W``
warps frame t+1 back onto frame t along the optical flow of the *content* video (the motion that
should be there), and ``M_t`` masks out pixels that are occluded or leave the frame, found with
the forward-backward check and motion-boundary test of Ruder et al. (GCPR 2016), as Lai et al. do.
It is the standard temporal-consistency measure of the video style transfer and blind video
consistency literature, and needs no learned weights: Lai et al. use FlowNet2, here DIS
(Kroeger et al., ECCV 2016; `cv2.DISOpticalFlow`, preset MEDIUM), which ships with
opencv-python-headless. Absolute values therefore differ from papers that use FlowNet2; compare
figures computed here with each other (the content video's own warping error is the floor).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable

import numpy as np


@dataclasses.dataclass(frozen=True)
class WarpingError:
    mean: float                 # E_warp
    pairs: np.ndarray           # E_pair for each consecutive pair
    valid_fraction: float       # mean share of pixels kept by the occlusion mask


def _flow_estimator():
    from adain_jax import extras

    extras.require("video", "optical flow (adain_jax.video.flicker)")
    import cv2

    # OpenCV's stubs omit this factory, which the module has (cv2 5.0).
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]


def _grey(rgb: np.ndarray) -> np.ndarray:
    import cv2

    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8:
        rgb = np.clip(np.asarray(rgb, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Samples ``image`` at ``p + flow(p)`` (bilinear): brings frame t+1 onto frame t's grid."""
    import cv2

    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    return cv2.remap(np.ascontiguousarray(image, dtype=np.float32), xs + flow[..., 0], ys + flow[..., 1],
                     interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def non_occluded(forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
    """Ruder et al.'s mask on frame t's grid: True where the flow t -> t+1 can be trusted.

    ``forward``: flow t -> t+1, ``backward``: flow t+1 -> t, both (H, W, 2) in pixels (x, y). A pixel
    is dropped when following it forward and back does not return near it
    (``|f + b'|^2 > 0.01 (|f|^2 + |b'|^2) + 0.5`` with ``b'`` the backward flow at ``p + f(p)``), when
    it sits on a motion boundary (``|grad f|^2 > 0.01 |f|^2 + 0.002``), or when it leaves the frame.
    """
    h, w = forward.shape[:2]
    back = warp(backward, forward)
    total = forward + back
    inconsistent = np.sum(total ** 2, -1) > 0.01 * (np.sum(forward ** 2, -1) + np.sum(back ** 2, -1)) + 0.5
    du_dy, du_dx = np.gradient(forward[..., 0])
    dv_dy, dv_dx = np.gradient(forward[..., 1])
    boundary = du_dx ** 2 + du_dy ** 2 + dv_dx ** 2 + dv_dy ** 2 > 0.01 * np.sum(forward ** 2, -1) + 0.002
    xs, ys = _grid(h, w)
    tx, ty = xs + forward[..., 0], ys + forward[..., 1]
    outside = (tx < 0) | (tx > w - 1) | (ty < 0) | (ty > h - 1)
    return ~(inconsistent | boundary | outside)


def pair_error(frame_t: np.ndarray, frame_next: np.ndarray, forward: np.ndarray, mask: np.ndarray) -> float:
    """E_pair: masked mean over pixels of the squared RGB distance between V_t and warped V_{t+1}."""
    diff = np.asarray(frame_t, np.float32) - warp(frame_next, forward)
    per_pixel = np.sum(diff.astype(np.float64) ** 2, axis=-1)
    count = mask.sum()
    return float((per_pixel * mask).sum() / count) if count else 0.0


def _as_float(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    return rgb.astype(np.float32) / np.float32(255.0) if rgb.dtype == np.uint8 else rgb.astype(np.float32)


def warping_error(stylized: Iterable[np.ndarray], content: Iterable[np.ndarray] | None = None) -> WarpingError:
    """E_warp of ``stylized`` frames (uint8, or float in [0, 1], (H, W, 3)), streaming.

    The flow comes from ``content`` (same length and size) when given, else from ``stylized`` itself.
    Only two frames of each video are held at a time.
    """
    dis = _flow_estimator()
    pairs, kept = [], []
    prev = prev_grey = None
    frames = iter(stylized)
    references = iter(content) if content is not None else None
    count = 0
    for frame in frames:
        reference = frame if references is None else next(references, None)
        if reference is None:
            raise ValueError(f"the content video has {count} frames, fewer than the stylized one")
        count += 1
        frame = _as_float(frame)
        grey = _grey(reference)
        if grey.shape != frame.shape[:2]:
            raise ValueError(f"frame {count - 1}: stylized frame is {frame.shape[1]}x{frame.shape[0]} but the "
                             f"content frame is {grey.shape[1]}x{grey.shape[0]}")
        if prev is not None:
            forward = dis.calc(prev_grey, grey, None)
            backward = dis.calc(grey, prev_grey, None)
            mask = non_occluded(forward, backward)
            pairs.append(pair_error(prev, frame, forward, mask))
            kept.append(float(mask.mean()))
        prev, prev_grey = frame, grey
    if references is not None and next(references, None) is not None:
        raise ValueError(f"the content video has more frames than the stylized one ({count})")
    if not pairs:
        raise ValueError("the warping error needs at least two frames")
    errors = np.asarray(pairs)
    return WarpingError(float(errors.mean()), errors, float(np.mean(kept)))


def video_warping_error(stylized_path: str | os.PathLike,
                        content_path: str | os.PathLike | None = None) -> WarpingError:
    """`warping_error` of two video files (decoded upright, as `adain_jax.video.container` reads them)."""
    from adain_jax.video.container import VideoReader

    with VideoReader(stylized_path, with_audio=False) as out:
        if content_path is None:
            return warping_error(f.rgb for f in out.frames())
        with VideoReader(content_path, with_audio=False) as src:
            return warping_error((f.rgb for f in out.frames()), (f.rgb for f in src.frames()))
