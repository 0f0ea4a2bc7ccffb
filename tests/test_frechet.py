"""adain_jax.quality.frechet: the Fréchet distance against closed forms and scipy, and the classifier's shapes."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from adain_jax.quality import frechet


def test_one_dimensional_gaussians_match_the_closed_form():
    # W2^2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2.
    for m1, s1, m2, s2 in ((0.0, 1.0, 0.0, 1.0), (1.5, 2.0, -0.5, 0.5), (3.0, 0.1, 3.0, 4.0)):
        got = frechet.frechet_distance([m1], [[s1 ** 2]], [m2], [[s2 ** 2]])
        assert got == pytest.approx((m1 - m2) ** 2 + (s1 - s2) ** 2, rel=1e-12, abs=1e-12)


def test_matches_the_sqrtm_form_for_full_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    s1, s2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    reference = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * np.real(scipy.linalg.sqrtm(s1 @ s2)))
    assert frechet.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(reference, rel=1e-9)


def test_a_dataset_against_itself_is_zero_and_against_a_changed_copy_is_not():
    rng = np.random.default_rng(1)
    features = rng.normal(size=(2000, 16)) @ rng.normal(size=(16, 16))
    assert frechet.frechet_distance_of(features, features) < 1e-8 * np.trace(np.cov(features, rowvar=False))
    half = frechet.frechet_distance_of(features[:1000], features[1000:])  # sampling noise only
    shifted = frechet.frechet_distance_of(features, features + 2.0)
    noised = frechet.frechet_distance_of(features, features + rng.normal(scale=4.0, size=features.shape))
    assert shifted == pytest.approx(16 * 4.0, rel=1e-9)  # a pure mean shift: |delta mu|^2
    assert noised > 5 * half and shifted > 5 * half


def test_rank_deficient_covariances_are_fine():
    rng = np.random.default_rng(2)
    few = rng.normal(size=(5, 32))  # fewer samples than dimensions: a covariance of rank 4 in 32-D
    # Shifting every feature by 1 keeps the covariance, so the distance is |delta mu|^2 = 32 * 1^2. The
    # 28 null directions of S^2 come out at rounding level, ~1e-7 each after the square root, hence abs;
    # a mishandled rank-deficient sqrt is off by the order of trace(S) (~28 here).
    assert frechet.frechet_distance_of(few, few + 1.0) == pytest.approx(32.0, abs=1e-4)


def test_bad_shapes_are_rejected():
    with pytest.raises(ValueError):
        frechet.statistics(np.zeros((1, 3)))
    with pytest.raises(ValueError):
        frechet.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_classifier_shapes():
    params = frechet.init_classifier(0, channels=1, resolution=16, num_classes=10, width=8, features=32)
    images = np.zeros((3, 16, 16, 1), np.float32)
    assert frechet.classifier_features(params, images).shape == (3, 32)
    assert frechet.classifier_logits(params, images).shape == (3, 10)
    with pytest.raises(ValueError):
        frechet.init_classifier(0, channels=1, resolution=10, num_classes=10)
