"""Weights on disk: the weights directory and the training-checkpoint layout, saved and loaded with Orbax.

A *weights directory* holds ``weights/`` (an Orbax StandardCheckpoint of ``{"encoder", "decoder"}``)
and ``manifest.json`` (where the tensors came from, their shapes). A training checkpoint step
(``WORKDIR/checkpoints/<step>/``) has the same ``weights/`` item beside its optimiser state, so
`load_weights` accepts a converter output, a checkpoint step or a whole training workdir.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from typing import Any, Mapping

import jax
import numpy as np

from adain_jax.model import architecture
from adain_jax.model.networks import Weights

MANIFEST = "manifest.json"
WEIGHTS_ITEM = "weights"
CHECKPOINTS = "checkpoints"
FORMAT = "adain-jax-weights/1"


def _checkpointer():
    import orbax.checkpoint as ocp  # imported lazily: it costs about a second at start-up

    return ocp.StandardCheckpointer()


def save_weights(weights: Weights, directory, manifest: Mapping[str, Any] | None = None) -> pathlib.Path:
    """Write a weights directory atomically: built in a temporary sibling, then renamed into place.

    An existing ``directory`` is replaced only once the new one is complete.
    """
    directory = pathlib.Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        ckptr = _checkpointer()
        ckptr.save(tmp / WEIGHTS_ITEM, jax.tree.map(np.asarray, weights))
        ckptr.wait_until_finished()
        ckptr.close()
        shapes = {"/".join(str(k.key) for k in path): "x".join(map(str, np.shape(leaf)))
                  for path, leaf in jax.tree_util.tree_leaves_with_path(weights)}
        full = {"format": FORMAT, **(dict(manifest) if manifest else {}), "shapes": shapes}
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2, sort_keys=True) + "\n")
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _abstract_weights(full_vgg: bool) -> Weights:
    def layer(spec):
        return {"kernel": jax.ShapeDtypeStruct(spec.flax_kernel_shape, np.float32),
                "bias": jax.ShapeDtypeStruct((spec.out_channels,), np.float32)}

    encoder_specs = architecture.ENCODER + (architecture.VGG_TAIL if full_vgg else ())
    return {"encoder": {s.name: layer(s) for s in encoder_specs},
            "decoder": {s.name: layer(s) for s in architecture.DECODER}}


def latest_checkpoint(checkpoints_dir) -> pathlib.Path | None:
    """The newest complete step directory under ``checkpoints_dir`` (Orbax names steps by number)."""
    checkpoints_dir = pathlib.Path(checkpoints_dir)
    if not checkpoints_dir.is_dir():
        return None
    steps = [p for p in checkpoints_dir.iterdir() if p.is_dir() and p.name.isdigit() and (p / WEIGHTS_ITEM).is_dir()]
    return max(steps, key=lambda p: int(p.name)) if steps else None


def resolve_weights_dir(directory) -> pathlib.Path:
    """The directory whose ``weights/`` item to read: DIR itself, or its latest training checkpoint."""
    directory = pathlib.Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such weights directory (convert the official files with "
                                "`python -m convert.vgg_to_flax`, or pass a training workdir)")
    if (directory / WEIGHTS_ITEM).is_dir():
        return directory
    step = latest_checkpoint(directory / CHECKPOINTS)
    if step is not None:
        return step
    raise FileNotFoundError(f"{directory}: holds neither converted weights ({WEIGHTS_ITEM}/ and {MANIFEST}) "
                            f"nor training checkpoints ({CHECKPOINTS}/<step>/{WEIGHTS_ITEM})")


def load_weights(directory) -> Weights:
    """Read weights written by the converter or by training; returns the pytree `stylize` takes.

    ``directory`` may be a converter output, a checkpoint step, or a training workdir (its latest
    checkpoint is used). Only the layers up to relu4_1 are returned, even from a --full-vgg file.
    """
    source = resolve_weights_dir(directory)
    item = source / WEIGHTS_ITEM
    # Only a converter output made with --full-vgg holds the VGG tail; its manifest says so.
    full_vgg = bool(read_manifest(source).get("full_vgg", False))
    ckptr = _checkpointer()
    try:
        restored = ckptr.restore(item, _abstract_weights(full_vgg))
    except Exception as e:  # Orbax/tensorstore raise many types for damaged files; report them all alike
        raise ValueError(f"{item}: not a readable adain-jax weights checkpoint ({type(e).__name__}: {e})") from e
    finally:
        ckptr.close()
    # The VGG tail of a --full-vgg file is dropped: nothing downstream uses it.
    restored = {"encoder": {s.name: restored["encoder"][s.name] for s in architecture.ENCODER},
                "decoder": {s.name: restored["decoder"][s.name] for s in architecture.DECODER}}
    # On the device once, not re-transferred by every `stylize` call.
    return jax.device_put(restored)


def read_manifest(directory) -> dict:
    path = pathlib.Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}
