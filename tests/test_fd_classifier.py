"""train.fd_classifier: the ablation's feature classifier learns the digits, is cached, and retrains only
for other data or settings."""

from __future__ import annotations

import numpy as np
import pytest

from train import data_sources, fd_classifier, input_pipeline


@pytest.fixture(scope="module")
def digits():
    source = data_sources.open_source("sklearn:digits", kind="data", data_dir="/nonexistent")
    stream = input_pipeline.ImageStream(source, seed=0, stream=0, image_size=16, crop_size=16)
    return fd_classifier.labelled_images(stream, channels=1)


def test_labelled_images_are_every_record_once_in_model_range(digits):
    images, labels = digits
    assert images.shape == (1797, 16, 16, 1) and images.dtype == np.float32
    assert images.min() == -1.0 and images.max() == 1.0
    assert np.bincount(labels).tolist() == np.bincount(__import__("sklearn.datasets").datasets.load_digits().target).tolist()


def test_trains_once_then_loads_from_the_cache(digits, tmp_path, monkeypatch):
    images, labels = digits
    params, info = fd_classifier.load_or_train(tmp_path, images, labels, fingerprint="d/1797", steps=150)
    assert info["heldout_accuracy"] > 0.85 and info["heldout_images"] == 359  # chance is 0.1
    features = fd_classifier.features(params, images[:700], chunk=512)  # a padded last chunk
    assert features.shape == (700, 128) and np.all(features >= 0)

    def no_training(*args, **kwargs):
        raise AssertionError("trained again")

    monkeypatch.setattr(fd_classifier, "train_classifier", no_training)
    cached, cached_info = fd_classifier.load_or_train(tmp_path, images, labels, fingerprint="d/1797", steps=150)
    assert cached_info == info
    assert np.array_equal(fd_classifier.features(cached, images[:700]), features)
    with pytest.raises(AssertionError, match="trained again"):  # other data: not the cached classifier
        fd_classifier.load_or_train(tmp_path, images, labels, fingerprint="other/10", steps=150)


def test_labelled_images_do_not_depend_on_the_stream_seed(digits):
    source = data_sources.open_source("sklearn:digits", kind="data", data_dir="/nonexistent")
    other = input_pipeline.ImageStream(source, seed=7, stream=0, image_size=16, crop_size=16)
    images, labels = fd_classifier.labelled_images(other, channels=1)
    assert np.array_equal(images, digits[0]) and np.array_equal(labels, digits[1])
    assert np.array_equal(labels, [r["label"] for r in source.records])  # record order
