"""adain_jax.quality.metrics against independent float64 computations (PyTorch for the VGG losses,
numpy for SSIM and the colour histograms) on the same weights and images.

Every metric must equal its float64 reference to 1e-5 relative. The JAX side runs in float32; the
bound is about 10x the float32 rounding of a VGG forward pass at this size, and compared with float64
(not with another float32 computation), it does not depend on how one CPU rounds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

try:
    import torch_reference as ref
except ImportError:
    from tests import torch_reference as ref

from adain_jax.quality import metrics
from training_helpers import official_random_weights

RTOL = 1e-5
SEED = 2


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


# ----------------------------------------------------------------------------------------------
# Independent references
# ----------------------------------------------------------------------------------------------


def torch_features(vgg, images: np.ndarray) -> list[torch.Tensor]:
    """net.py's encode_with_intermediate on the truncated vgg: relu1_1 .. relu4_1 (NCHW float64)."""
    return ref.encode_with_intermediate(vgg, ref.nhwc_to_nchw(images.astype(np.float64), torch.float64))


def torch_losses(vgg, content, style, result) -> dict[str, np.ndarray]:
    """content, mean/std style and Gram losses, per pair, as the port (and Gatys) define them."""
    out = {"content_loss": [], "style_loss": [], "gram_loss": []}
    with torch.no_grad():
        for i in range(content.shape[0]):
            fc = torch_features(vgg, content[i:i + 1])
            fs = torch_features(vgg, style[i:i + 1])
            fr = torch_features(vgg, result[i:i + 1])
            t = ref.adaptive_instance_normalization(fc[-1], fs[-1])
            out["content_loss"].append(F.mse_loss(fr[-1], t).item())
            loss_s = loss_g = 0.0
            for a, b in zip(fr, fs):
                am, astd = ref.calc_mean_std(a)
                bm, bstd = ref.calc_mean_std(b)
                loss_s = loss_s + F.mse_loss(am, bm) + F.mse_loss(astd, bstd)
                ga = torch.einsum("nchw,ndhw->ncd", a, a) / (a.shape[2] * a.shape[3])
                gb = torch.einsum("nchw,ndhw->ncd", b, b) / (b.shape[2] * b.shape[3])
                loss_g = loss_g + F.mse_loss(ga, gb)
            out["style_loss"].append(float(loss_s))
            out["gram_loss"].append(float(loss_g))
    return {k: np.asarray(v) for k, v in out.items()}


def numpy_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """SSIM (Wang et al. 2004) with a full 2-D 11x11 Gaussian window, float64, one HxWx3 pair."""
    r = 5
    g = np.exp(-0.5 * (np.arange(-r, r + 1) / 1.5) ** 2)
    w = np.outer(g, g) / np.sum(np.outer(g, g))
    a, b = a.astype(np.float64), b.astype(np.float64)
    vals = []
    for ch in range(3):
        pa = np.lib.stride_tricks.sliding_window_view(a[..., ch], (11, 11))  # (H-10, W-10, 11, 11)
        pb = np.lib.stride_tricks.sliding_window_view(b[..., ch], (11, 11))
        mu_a, mu_b = np.sum(pa * w, axis=(2, 3)), np.sum(pb * w, axis=(2, 3))
        var_a = np.sum(w * (pa - mu_a[..., None, None]) ** 2, axis=(2, 3))
        var_b = np.sum(w * (pb - mu_b[..., None, None]) ** 2, axis=(2, 3))
        cov = np.sum(w * (pa - mu_a[..., None, None]) * (pb - mu_b[..., None, None]), axis=(2, 3))
        c1, c2 = 0.01 ** 2, 0.03 ** 2
        s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
        vals.append(s.mean())
    return float(np.mean(vals))


def numpy_color_distance(a: np.ndarray, b: np.ndarray, bins: int = 32) -> float:
    """Mean over RGB of the earth mover's distance between np.histogram distributions on [0, 1]."""
    d = []
    for ch in range(3):
        ha, _ = np.histogram(a[..., ch].astype(np.float64), bins=bins, range=(0.0, 1.0))
        hb, _ = np.histogram(b[..., ch].astype(np.float64), bins=bins, range=(0.0, 1.0))
        ca, cb = np.cumsum(ha / ha.sum()), np.cumsum(hb / hb.sum())
        d.append(np.sum(np.abs(ca - cb)) / bins)
    return float(np.mean(d))


# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case():
    weights = official_random_weights(SEED)
    vgg_sd, dec_sd = ref.official_state_dicts(SEED)
    vgg64, _ = ref.load_networks(vgg_sd, dec_sd, dtype=torch.float64)
    content = ref.make_images(SEED + 1, 2, 40, 48)
    style = ref.make_images(SEED + 2, 2, 32, 56)  # another size than the content, as in real use
    # Any image at the content's size will do for parity; the library's stylize is not needed.
    result = ref.make_images(SEED + 3, 2, 40, 48)
    return weights, vgg64, content, style, result


def test_vgg_losses_match_float64_pytorch(case):
    weights, vgg64, content, style, result = case
    got = metrics.evaluate(weights["encoder"], content, style, result)
    want = torch_losses(vgg64, content, style, result)
    for name in ("content_loss", "style_loss", "gram_loss"):
        assert got[name].shape == (2,)
        print(f"{name}: rel {_rel(got[name], want[name]):.1e}")
        assert _rel(got[name], want[name]) < RTOL, (name, np.asarray(got[name]), want[name])
        assert np.all(want[name] > 0)


def test_ssim_and_color_distance_match_float64_numpy(case):
    weights, _, content, style, result = case
    got = metrics.evaluate(weights["encoder"], content, style, result)
    want_ssim = [numpy_ssim(content[i], result[i]) for i in range(2)]
    want_color = [numpy_color_distance(result[i], style[i]) for i in range(2)]
    print(f"ssim rel {_rel(got['ssim'], want_ssim):.1e}, color rel {_rel(got['color_distance'], want_color):.1e}")
    assert _rel(got["ssim"], want_ssim) < RTOL, (np.asarray(got["ssim"]), want_ssim)
    assert _rel(got["color_distance"], want_color) < RTOL, (np.asarray(got["color_distance"]), want_color)


def test_metrics_on_known_cases():
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(2, 24, 20, 3)).astype(np.float32)
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, rtol=1e-6)
    assert float(metrics.ssim(a, 1 - a)[0]) < 0  # anticorrelated structure
    np.testing.assert_allclose(metrics.color_distance(a, a[:, ::-1]), 0.0, atol=1e-7)  # same colours, moved
    # All mass in the first bin against all in the last: every CDF step differs by 1 -> (bins - 1) / bins.
    black, white = np.zeros((1, 16, 16, 3), np.float32), np.ones((1, 8, 8, 3), np.float32)
    np.testing.assert_allclose(metrics.color_distance(black, white), (metrics.HIST_BINS - 1) / metrics.HIST_BINS)
    hist = metrics.color_histograms(a)
    np.testing.assert_allclose(np.sum(np.asarray(hist), axis=-1), 1.0, rtol=1e-6)
    # Gram of a constant feature map c: every entry c_i * c_j.
    feat = np.broadcast_to(np.arange(1, 4, dtype=np.float32), (1, 5, 7, 3))
    np.testing.assert_allclose(metrics.gram(feat)[0], np.outer([1, 2, 3], [1, 2, 3]), rtol=1e-6)


def test_evaluate_scores_each_pair_on_its_own_and_rejects_mismatched_shapes(case):
    weights, _, content, style, result = case
    both = metrics.evaluate(weights["encoder"], content, style, result)
    swapped = metrics.evaluate(weights["encoder"], content[::-1], style[::-1], result[::-1])  # same program
    for name in metrics.METRICS:
        np.testing.assert_allclose(swapped[name], both[name][::-1], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="differs from content"):
        metrics.evaluate(weights["encoder"], content, style, result[:, :32])
    with pytest.raises(ValueError, match="at least 11"):
        metrics.ssim(content[:, :8, :8], content[:, :8, :8])
