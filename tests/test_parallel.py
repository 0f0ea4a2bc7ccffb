"""adain_jax.parallel: the ('data',) mesh and the shardings (multi-device cases: tests/test_train.py)."""

from __future__ import annotations

import jax
import numpy as np
from adain_jax import parallel


def test_mesh_batch_and_replicated_shardings():
    mesh = parallel.make_mesh()
    assert mesh.axis_names == ("data",) and mesh.size == jax.device_count()
    batch = parallel.put_batch({"content": np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)}, mesh)
    assert batch["content"].sharding == parallel.batch_sharded(mesh)
    np.testing.assert_array_equal(np.asarray(batch["content"]).ravel(), np.arange(96))
    tree = parallel.put_replicated({"a": np.ones(3, np.float32)}, mesh)
    assert tree["a"].sharding.is_fully_replicated
    local = parallel.local_copy(tree)
    assert local["a"].devices() == {jax.local_devices()[0]}
