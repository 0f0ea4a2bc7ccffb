"""The classifier behind the ablation's Fréchet distance: trained once on a labelled dataset, cached.

`load_or_train(directory, images, labels, ...)` trains `adain_jax.quality.frechet`'s small CNN on a
fixed 80 % of the dataset (Adam, softmax cross-entropy) and measures its accuracy on the other 20 %,
then keeps ``params.npz`` and ``info.json`` (held-out accuracy, sizes, the data fingerprint) in
``directory``. A later call with the same data fingerprint and settings loads them instead of
training again, so every ablation row is measured with the same features.
"""

from __future__ import annotations

import json
import os
import pathlib

import absl.logging as logging
import jax
import jax.numpy as jnp
import numpy as np
import optax

from adain_jax.quality import frechet
from train.errors import SetupError

PARAMS_FILE, INFO_FILE = "params.npz", "info.json"
HOLDOUT = 0.2


def labelled_images(stream, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """Every record of ``stream``'s source once, in record order (whatever the stream's seed), as the GAN
    sees them (the stream's epoch 0: resized and cropped): images in [-1, 1], and their labels."""
    source = stream.source
    by_record = {}
    for k in range(len(source)):
        index = stream.record_index(k)
        record = source.records[index]
        if "label" not in record:
            raise SetupError(f"{source.spec}: has no 'label' feature; the ablation's Fréchet distance needs a "
                             "labelled dataset to train its feature classifier (e.g. sklearn:digits)")
        by_record[index] = (stream.sample(k), int(np.asarray(record["label"])))
    images, labels = zip(*(by_record[i] for i in sorted(by_record)))
    x = np.stack(images).astype(np.float32)
    x = x.mean(axis=-1, keepdims=True) if channels == 1 else x[..., :channels]
    return x / np.float32(127.5) - np.float32(1.0), np.asarray(labels, np.int32)


def _flatten(params: dict) -> dict[str, np.ndarray]:
    return {f"{layer}/{name}": np.asarray(v) for layer, d in params.items() for name, v in d.items()}


def _unflatten(arrays) -> dict:
    params: dict = {}
    for key in arrays.files:
        layer, name = key.split("/")
        params.setdefault(layer, {})[name] = arrays[key]
    return params


def features(params: dict, images: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Penultimate-layer features of ``images`` (N, H, W, C) in [-1, 1], in fixed-size chunks (one compile)."""
    fn = jax.jit(frechet.classifier_features)
    out = []
    for start in range(0, len(images), chunk):
        part = images[start:start + chunk]
        padded = np.concatenate([part, np.zeros((chunk - len(part), *part.shape[1:]), part.dtype)]) \
            if len(part) < chunk else part
        out.append(np.asarray(fn(params, padded))[:len(part)])
    return np.concatenate(out)


def train_classifier(images: np.ndarray, labels: np.ndarray, *, seed: int = 0, steps: int = 800,
                     batch: int = 64, lr: float = 1e-3) -> tuple[dict, dict]:
    """``(params, info)``: trained on a fixed 80 % split, ``info["heldout_accuracy"]`` on the other 20 %."""
    rng = np.random.default_rng([seed, 0xC1A5])
    order = rng.permutation(len(images))
    held = order[:int(len(images) * HOLDOUT)]
    train = order[len(held):]
    params = frechet.init_classifier(seed, channels=images.shape[-1], resolution=images.shape[1],
                                     num_classes=int(labels.max()) + 1)
    tx = optax.adam(lr)

    @jax.jit
    def step(params, opt_state, x, y):
        def loss_fn(p):
            return optax.softmax_cross_entropy_with_integer_labels(frechet.classifier_logits(p, x), y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    params = jax.tree.map(jnp.asarray, params)
    opt_state = tx.init(params)
    for _ in range(steps):
        idx = rng.choice(train, batch, replace=False)
        params, opt_state, loss = step(params, opt_state, images[idx], labels[idx])
    logits = jax.jit(frechet.classifier_logits)(params, images[held])
    accuracy = float(np.mean(np.argmax(np.asarray(logits), -1) == labels[held]))
    info = {"heldout_accuracy": accuracy, "train_images": int(len(train)), "heldout_images": int(len(held)),
            "steps": steps, "batch": batch, "lr": lr, "seed": seed, "final_train_loss": float(loss)}
    return jax.tree.map(np.asarray, params), info


def load_or_train(directory, images: np.ndarray, labels: np.ndarray, *, fingerprint: str, seed: int = 0,
                  steps: int = 800) -> tuple[dict, dict]:
    """The classifier cached in ``directory`` for this data and settings, else a new one (then cached)."""
    directory = pathlib.Path(directory)
    info_path, params_path = directory / INFO_FILE, directory / PARAMS_FILE
    if info_path.is_file() and params_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("fingerprint") == fingerprint and info.get("seed") == seed and info.get("steps") == steps:
            with np.load(params_path, allow_pickle=False) as arrays:
                return _unflatten(arrays), info
        logging.warning("%s holds a classifier of other data or settings; training a new one", directory)
    params, info = train_classifier(images, labels, seed=seed, steps=steps)
    info["fingerprint"] = fingerprint
    directory.mkdir(parents=True, exist_ok=True)
    for path, write in ((params_path, lambda f: np.savez(f, **_flatten(params))),
                        (info_path, lambda f: f.write(json.dumps(info, indent=2, sort_keys=True).encode()))):
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)  # the info file comes last: its presence means the params are complete
    logging.info("Feature classifier: held-out accuracy %.4f (cached in %s)", info["heldout_accuracy"], directory)
    return params, info
