"""Data parallelism over every device: a 1-D ``('data',)`` mesh, batch sharded, parameters replicated.

Shared by training (`train.train`) and any batched inference that spreads over devices. The train
step is one ``jax.jit`` program with explicit ``in_shardings``/``out_shardings`` on this
mesh; XLA inserts the gradient all-reduce. This is the current JAX recipe (``jax.pmap`` is in
maintenance mode since JAX 0.8) and works unchanged on one CPU, eight GPUs or a multi-host pod: on
several hosts, each host feeds its own slice of the global batch
(`jax.make_array_from_process_local_data`) after ``jax.distributed.initialize()``.

The mesh axis uses ``AxisType.Auto`` (sharding propagated by XLA from the pinned inputs/outputs)
rather than the new ``Explicit`` default of `jax.make_mesh`: under Explicit sharding types the
decoder's nearest-neighbour upsampling (a reshape that merges spatial axes next to the sharded
batch axis) is rejected unless it is given an ``out_sharding``. The computation is the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (default: every device of every host)."""
    devices = list(jax.devices() if devices is None else devices)
    return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,), devices=devices)


def replicated(mesh: Mesh) -> NamedSharding:
    """Parameters, optimiser state, metrics: a full copy on every device."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """Batches: split along the leading (batch) axis over the ``data`` axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def put_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """This host's part of a global batch -> global arrays sharded over ``data``."""
    sharding = batch_sharded(mesh)
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def put_replicated(tree: Any, mesh: Mesh) -> Any:
    """Host values (identical on every host) -> arrays replicated over the mesh."""
    sharding = replicated(mesh)
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), tree)


def local_copy(tree: Any) -> Any:
    """A replicated global tree -> single-device arrays on this host's first device (for sampling)."""
    return jax.tree.map(lambda x: x.addressable_data(0), tree)
