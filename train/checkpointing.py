"""The train state <-> Orbax checkpoint items, and what exact resume needs from them.

The on-disk names are `adain_jax.io.weights`'s (``WORKDIR/checkpoints/<step>/<item>``, and which steps
are complete). A state is mapped onto a step's array items by an `ItemAdapter` (`items` / `from_items`);
the default, `ADAIN`, maps a `train.train.TrainState` onto the three items of a step:

* ``weights``      ``{"encoder": state.encoder, "decoder": state.params}``, an Orbax StandardCheckpoint:
                   exactly the item `adain_jax.load_weights` reads, so ``adain-jax stylize --weights
                   WORKDIR`` uses the latest checkpoint with no export step;
* ``train_state``  ``{"step": state.step, "opt_state": state.opt_state}`` (the Adam moments and the
                   schedule's count);
* ``meta``         JSON: the global data position (samples consumed), seed, batch size, the data
                   fingerprints and the config, for resume checks and for people.

Resume restores all three; the input pipeline is a pure function of (seed, sample position), so the
run continues exactly as if it had never stopped. Saves are asynchronous (training continues while
the files are written) and atomic: a step directory appears only once complete, so a run killed
mid-save resumes from the previous checkpoint. The last ``max_to_keep`` checkpoints are kept.

Other runs (the StyleGAN training, `train.gan`) pass their own adapter: the same manager, saves,
restores and resume rules, other item names (a step is complete once the adapter's ``complete_item``
directory is there).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp

from adain_jax.io import weights as weights_lib
from adain_jax.io.weights import META_ITEM, TRAIN_STATE_ITEM, WEIGHTS_ITEM


def state_items(state) -> dict[str, Any]:
    """The array items of a TrainState (everything but ``meta``)."""
    return {WEIGHTS_ITEM: {"encoder": state.encoder, "decoder": state.params},
            TRAIN_STATE_ITEM: {"step": state.step, "opt_state": state.opt_state}}


def state_from_items(like, items: dict[str, Any]):
    """The TrainState held by ``items`` (`state_items`'s layout), of the same type as ``like``."""
    weights, train_state = items[WEIGHTS_ITEM], items[TRAIN_STATE_ITEM]
    return like.replace(step=train_state["step"], params=weights["decoder"], encoder=weights["encoder"],
                        opt_state=train_state["opt_state"])


@dataclasses.dataclass(frozen=True)
class ItemAdapter:
    """How a train state maps onto the Orbax items of a checkpoint step (``meta`` excepted)."""

    items: Callable[[Any], dict[str, Any]]  # state -> {item name: pytree of arrays}
    from_items: Callable[[Any, dict[str, Any]], Any]  # (like, restored items) -> state
    complete_item: str  # a step directory holding this item is a complete checkpoint


ADAIN = ItemAdapter(state_items, state_from_items, WEIGHTS_ITEM)


def abstract_like(tree: Any) -> Any:
    """Shape/dtype/sharding of every array in ``tree``: the restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
    """An `ocp.CheckpointManager` for the training checkpoints of ``workdir``."""

    def __init__(self, workdir, *, max_to_keep: int | None = 3, asynchronous: bool = True,
                 adapter: ItemAdapter = ADAIN):
        self.workdir = pathlib.Path(workdir).absolute()
        self.adapter = adapter
        self.directory = self.workdir / weights_lib.CHECKPOINTS
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep if max_to_keep and max_to_keep > 0 else None,
            create=True,
            enable_async_checkpointing=asynchronous,
            cleanup_tmp_directories=True,  # leftovers of a save that was killed
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint on disk (not counting saves still in flight)."""
        steps = weights_lib.checkpoint_steps(self.workdir, self.adapter.complete_item)
        return steps[-1] if steps else None

    def step_dir(self, step: int) -> pathlib.Path:
        return weights_lib.checkpoint_dir(self.workdir, step)

    def save(self, step: int, state, meta: dict) -> bool:
        """Start saving ``state`` as ``step`` (returns once the arrays are copied to host memory).

        False if ``step`` exists or is being saved already (Orbax's own list includes saves in flight).
        """
        if step in self.manager.all_steps():
            return False
        items = {name: ocp.args.StandardSave(tree) for name, tree in self.adapter.items(state).items()}
        return self.manager.save(step, args=ocp.args.Composite(**items, **{META_ITEM: ocp.args.JsonSave(meta)}),
                                 force=True)

    def restore(self, step: int, like) -> tuple[Any, dict]:
        """Checkpoint ``step`` as ``(state, meta)``, with the shapes, dtypes and shardings of ``like``."""
        items = {name: ocp.args.StandardRestore(abstract_like(tree)) for name, tree in self.adapter.items(like).items()}
        restored = self.manager.restore(step, args=ocp.args.Composite(**items, **{META_ITEM: ocp.args.JsonRestore()}))
        return self.adapter.from_items(like, restored), dict(restored[META_ITEM])

    def reached_preemption(self, step: int) -> bool:
        """True once the cluster announced a preemption (multi-host, with JAX's preemption service)."""
        try:
            return bool(self.manager.reached_preemption(step))
        except Exception:  # no distributed runtime / preemption service: never preempted this way
            return False

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def abandon(self) -> None:
        """Drop saves still in flight without waiting (they cannot finish once a process is gone)."""
        self.manager = None

    def close(self) -> None:
        if self.manager is not None:
            self.manager.wait_until_finished()
            self.manager.close()
            self.manager = None


def read_meta(workdir, step: int) -> dict:
    """The ``meta`` item of checkpoint ``step`` of ``workdir`` (read through Orbax; nothing is created)."""
    directory = pathlib.Path(workdir).absolute() / weights_lib.CHECKPOINTS
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(read_only=True))
    try:
        return dict(manager.restore(step, args=ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()}))[META_ITEM])
    finally:
        manager.close()
