"""train.checkpointing: Orbax items per step, exact round trip, and the layout load_weights reads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adain_jax
from adain_jax import parallel
from train import checkpointing


@pytest.fixture
def trees(random_weights):
    tx = optax.adam(lambda count: 1e-3 / (1 + 0.1 * count))
    mesh = parallel.make_mesh(jax.devices()[:1])
    weights = parallel.put_replicated(random_weights, mesh)
    opt_state = tx.init(weights["decoder"])
    # Make the Adam moments non-trivial, so the round trip is meaningful.
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), weights["decoder"])
    _, opt_state = tx.update(grads, opt_state, weights["decoder"])
    return weights, {"step": jnp.asarray(7, jnp.int32), "opt_state": opt_state}


def _equal(a, b) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_round_trip_is_exact_and_keeps_shardings(tmp_path, trees):
    weights, train_state = trees
    ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=2)
    assert ckpt.latest_step() is None
    assert ckpt.save(7, weights=weights, train_state=train_state, meta={"data_position": 56, "seed": 3})
    assert not ckpt.save(7, weights=weights, train_state=train_state, meta={})  # exists: not rewritten
    ckpt.wait()
    assert ckpt.latest_step() == 7
    like_w = jax.tree.map(jnp.zeros_like, weights)
    like_t = jax.tree.map(jnp.zeros_like, train_state)
    w, t, meta = ckpt.restore(7, weights=like_w, train_state=like_t)
    ckpt.close()
    assert _equal(w, weights) and _equal(t, train_state)
    assert meta == {"data_position": 56, "seed": 3}
    assert all(x.sharding == y.sharding for x, y in zip(jax.tree.leaves(t), jax.tree.leaves(train_state)))
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "7").iterdir() if p.is_dir()) == \
        ["meta", "train_state", "weights"]


def test_keeps_the_last_k_and_load_weights_reads_the_latest(tmp_path, trees):
    weights, train_state = trees
    ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=2)
    for step in (1, 2, 3):
        bumped = jax.tree.map(lambda x: x + step, weights)
        ckpt.save(step, weights=bumped, train_state=train_state, meta={"step": step})
    ckpt.close()
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [2, 3]
    loaded = adain_jax.load_weights(tmp_path)  # a training workdir, as `adain-jax stylize --weights` gets it
    assert _equal(loaded, jax.tree.map(lambda x: x + 3, weights))
