"""Weights on disk: the official PyTorch layout mapped to named Flax params, saved and loaded with Orbax.

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

from adain_jax import architecture
from adain_jax.networks import Weights
from adain_jax.pth_reader import WeightFileError

MANIFEST = "manifest.json"
WEIGHTS_ITEM = "weights"
CHECKPOINTS = "checkpoints"
FORMAT = "adain-jax-weights/1"


def _layer_from_torch(path, state_dict: Mapping[str, np.ndarray], spec: architecture.ConvSpec) -> dict:
    """One conv layer's kernel (OIHW -> HWIO) and bias, with the checks the converter promises."""
    out = {}
    for suffix, expected in (("weight", spec.torch_weight_shape), ("bias", (spec.out_channels,))):
        key = f"{spec.torch_index}.{suffix}"
        if key not in state_dict:
            raise WeightFileError(path, f"missing (expected {suffix} of {spec.name}, shape {expected}); "
                                        "not the official layout", tensor=key)
        value = state_dict[key]
        if value.dtype != np.float32:
            raise WeightFileError(path, f"dtype {value.dtype}, expected float32", tensor=key)
        if tuple(value.shape) != expected:
            raise WeightFileError(path, f"shape {tuple(value.shape)}, expected {expected} ({spec.name}); "
                                        "not the official layout", tensor=key)
        if not np.all(np.isfinite(value)):
            raise WeightFileError(path, "contains NaN or infinite values", tensor=key)
        out[suffix] = value
    return {"kernel": np.ascontiguousarray(out["weight"].transpose(2, 3, 1, 0)), "bias": out["bias"]}


def _layout_keys(specs) -> set[str]:
    return {f"{s.torch_index}.{p}" for s in specs for p in ("weight", "bias")}


def _network_from_torch(path, state_dict, specs, tail=(), *, other=None) -> dict:
    """``other`` = (name, specs) of the other official file, to recognise the two being swapped."""
    if other is not None and set(state_dict) == _layout_keys(other[1]):
        raise WeightFileError(path, f"this is the official {other[0]} layout; were --vgg and --decoder swapped?")
    unexpected = [k for k in state_dict if k not in _layout_keys((*specs, *tail))]
    if unexpected:
        raise WeightFileError(path, "not in the official layout (wrong file, or a different network?)",
                              tensor=unexpected[0])
    return {spec.name: _layer_from_torch(path, state_dict, spec) for spec in specs}


def weights_from_torch(vgg_path, vgg_state: Mapping[str, np.ndarray], decoder_path,
                       decoder_state: Mapping[str, np.ndarray], *, full_vgg: bool = False) -> Weights:
    """Map the official state dicts (as read by `read_state_dict`) to the weights pytree.

    The VGG file's tail (relu4_2..relu5_4) is validated and dropped unless ``full_vgg``; `stylize`
    and training only use the encoder up to relu4_1. Raises WeightFileError naming file and tensor.
    """
    encoder_specs = architecture.ENCODER + (architecture.VGG_TAIL if full_vgg else ())
    vgg_specs = architecture.ENCODER + architecture.VGG_TAIL
    encoder = _network_from_torch(vgg_path, vgg_state, encoder_specs, tail=architecture.VGG_TAIL,
                                  other=("decoder.pth", architecture.DECODER))
    if not full_vgg:  # still reject a malformed tail: it means the file is not what it claims to be
        for spec in architecture.VGG_TAIL:
            if f"{spec.torch_index}.weight" in vgg_state:
                _layer_from_torch(vgg_path, vgg_state, spec)
    decoder = _network_from_torch(decoder_path, decoder_state, architecture.DECODER,
                                  other=("vgg_normalised.pth", vgg_specs))
    return {"encoder": encoder, "decoder": decoder}


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
