"""Orbax checkpoints in ``WORKDIR/checkpoints/<step>/`` and what exact resume needs from them.

Each step directory holds three items:

* ``weights``      ``{"encoder", "decoder"}``, an Orbax StandardCheckpoint: exactly the item
                   `adain_jax.load_weights` reads, so ``adain-jax stylize --weights WORKDIR`` uses
                   the latest checkpoint with no export step;
* ``train_state``  ``{"step", "opt_state"}`` (the Adam moments and the schedule's count);
* ``meta``         JSON: the global data position (samples consumed), seed, batch size, the data
                   fingerprints and the config, for resume checks and for people.

Resume restores all three; the input pipeline is a pure function of (seed, sample position), so the
run continues exactly as if it had never stopped. Saves are asynchronous (training continues while
the files are written) and atomic: a step directory appears only once complete, so a run killed
mid-save resumes from the previous checkpoint. The last ``max_to_keep`` checkpoints are kept.
"""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import orbax.checkpoint as ocp

CHECKPOINTS = "checkpoints"  # adain_jax.weights looks for WORKDIR/checkpoints/<step>/weights
WEIGHTS, TRAIN_STATE, META = "weights", "train_state", "meta"


def abstract_like(tree: Any) -> Any:
    """Shape/dtype/sharding of every array in ``tree``: the restore target."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)


class Checkpointer:
    """An `ocp.CheckpointManager` for training checkpoints of ``workdir``."""

    def __init__(self, workdir, *, max_to_keep: int | None = 3, asynchronous: bool = True):
        self.directory = pathlib.Path(workdir).absolute() / CHECKPOINTS
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep if max_to_keep and max_to_keep > 0 else None,
            create=True,
            enable_async_checkpointing=asynchronous,
            cleanup_tmp_directories=True,  # leftovers of a save that was killed
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, *, weights: Any, train_state: Any, meta: dict) -> bool:
        """Start saving (returns once the arrays are copied to host memory); False if ``step`` exists."""
        if step in self.manager.all_steps():
            return False
        return self.manager.save(step, args=ocp.args.Composite(**{
            WEIGHTS: ocp.args.StandardSave(weights),
            TRAIN_STATE: ocp.args.StandardSave(train_state),
            META: ocp.args.JsonSave(meta),
        }), force=True)

    def restore(self, step: int, *, weights: Any, train_state: Any) -> tuple[Any, Any, dict]:
        """Restore ``step`` into the shapes, dtypes and shardings of the given example trees."""
        restored = self.manager.restore(step, args=ocp.args.Composite(**{
            WEIGHTS: ocp.args.StandardRestore(abstract_like(weights)),
            TRAIN_STATE: ocp.args.StandardRestore(abstract_like(train_state)),
            META: ocp.args.JsonRestore(),
        }))
        return restored[WEIGHTS], restored[TRAIN_STATE], dict(restored[META])

    def reached_preemption(self, step: int) -> bool:
        """True once the cluster announced a preemption (multi-host, with JAX's preemption service)."""
        try:
            return bool(self.manager.reached_preemption(step))
        except Exception:  # no distributed runtime / preemption service: never preempted this way
            return False

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        if self.manager is not None:
            self.manager.wait_until_finished()
            self.manager.close()
            self.manager = None
