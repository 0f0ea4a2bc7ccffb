"""train.checkpointing: a TrainState <-> Orbax items per step, exact round trip, the layout load_weights reads."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adain_jax
from adain_jax import parallel
from train import checkpointing
from train.train import TrainState


@pytest.fixture
def state(random_weights):
    tx = optax.adam(lambda count: 1e-3 / (1 + 0.1 * count))
    mesh = parallel.make_mesh(jax.devices()[:1])
    weights = parallel.put_replicated(random_weights, mesh)
    opt_state = tx.init(weights["decoder"])
    # Make the Adam moments non-trivial, so the round trip is meaningful.
    grads = jax.tree.map(lambda x: jnp.full_like(x, 0.5), weights["decoder"])
    _, opt_state = tx.update(grads, opt_state, weights["decoder"])
    return TrainState(step=jnp.asarray(7, jnp.int32), params=weights["decoder"], encoder=weights["encoder"],
                      opt_state=opt_state)


def _equal(a, b) -> bool:
    return jax.tree.structure(a) == jax.tree.structure(b) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_round_trip_is_exact_and_keeps_shardings(tmp_path, state):
    ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=2)
    assert ckpt.latest_step() is None
    assert ckpt.save(7, state, meta={"data_position": 56, "seed": 3})
    assert not ckpt.save(7, state, meta={})  # being saved or saved: not rewritten
    ckpt.wait()
    assert ckpt.latest_step() == 7
    restored, meta = ckpt.restore(7, like=jax.tree.map(jnp.zeros_like, state))
    ckpt.close()
    assert isinstance(restored, TrainState) and _equal(restored, state)
    assert meta == {"data_position": 56, "seed": 3}
    assert all(x.sharding == y.sharding for x, y in zip(jax.tree.leaves(restored), jax.tree.leaves(state)))
    # The items are where adain_jax.io.weights says, and the meta item reads back without a manager.
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "7").iterdir() if p.is_dir()) == \
        ["meta", "train_state", "weights"]
    assert checkpointing.read_meta(tmp_path, 7) == {"data_position": 56, "seed": 3}


def test_keeps_the_last_k_and_load_weights_reads_the_latest(tmp_path, state):
    ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=2)
    for step in (1, 2, 3):
        bumped = state.replace(params=jax.tree.map(lambda x: x + step, state.params))
        ckpt.save(step, bumped, meta={"step": step})
    ckpt.close()
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [2, 3]
    assert checkpointing.Checkpointer(tmp_path).latest_step() == 3
    loaded = adain_jax.load_weights(tmp_path)  # a training workdir, as `adain-jax stylize --weights` gets it
    assert _equal(loaded["decoder"], jax.tree.map(lambda x: x + 3, state.params))
    assert _equal(loaded["encoder"], state.encoder)


def test_steps_being_written_are_not_complete(tmp_path, state):
    from adain_jax.io import weights as weights_lib

    ckpt = checkpointing.Checkpointer(tmp_path, max_to_keep=None)
    ckpt.save(4, state, meta={})
    ckpt.close()
    # What a killed save leaves behind: Orbax's temporary name, and a step directory without weights.
    (tmp_path / "checkpoints" / "8.orbax-checkpoint-tmp-123" / "weights").mkdir(parents=True)
    (tmp_path / "checkpoints" / "9" / "meta").mkdir(parents=True)
    assert weights_lib.checkpoint_steps(tmp_path) == [4]
    assert checkpointing.Checkpointer(tmp_path).latest_step() == 4


def test_an_item_adapter_maps_another_state_onto_its_own_items(tmp_path):
    """Another run's state (the StyleGAN one's shape): its items, its completeness rule, exact round trip."""
    @jax.tree_util.register_dataclass
    @__import__("dataclasses").dataclass
    class Other:
        step: jax.Array
        net: dict

    adapter = checkpointing.ItemAdapter(
        items=lambda s: {"net_item": {"net": s.net}, "train_state": {"step": s.step}},
        from_items=lambda like, items: Other(step=items["train_state"]["step"], net=items["net_item"]["net"]),
        complete_item="net_item")
    state = Other(step=jnp.asarray(3, jnp.int32), net={"w": jnp.arange(6.0).reshape(2, 3)})
    ckpt = checkpointing.Checkpointer(tmp_path, adapter=adapter)
    ckpt.save(3, state, meta={"seed": 1})
    ckpt.close()
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "3").iterdir() if p.is_dir()) == \
        ["meta", "net_item", "train_state"]
    (tmp_path / "checkpoints" / "5" / "train_state").mkdir(parents=True)  # no net_item: incomplete
    reader = checkpointing.Checkpointer(tmp_path, adapter=adapter)
    assert reader.latest_step() == 3
    assert checkpointing.Checkpointer(tmp_path).latest_step() is None  # the decoder's rule wants `weights`
    restored, meta = reader.restore(3, like=Other(step=jnp.zeros((), jnp.int32), net={"w": jnp.zeros((2, 3))}))
    reader.close()
    assert _equal(restored, state) and meta == {"seed": 1}
