"""Weights on disk: the weights directory and the training-checkpoint layout.

A *weights directory* (what the converter and `save_weights` write) holds ``weights.npz`` (every
array of ``{"encoder", "decoder"}`` under its path, e.g. ``encoder/conv1_1/kernel``) and
``manifest.json`` (where the tensors came from, their shapes). A plain uncompressed ``.npz`` reads
in milliseconds and needs no Orbax import (about half a second of a command's start-up); it is read
with ``allow_pickle=False``, so it cannot run code. A training checkpoint step
(``WORKDIR/checkpoints/<step>/``) holds the weights as an Orbax item ``weights/`` beside the
optimiser state, and so do weights directories written before format 2, so `load_weights` accepts
a converter output, a checkpoint step or a whole training workdir.

A decoder variant of the MVA study (`adain_jax.model.variants`: skips change the decoder's shapes,
input normalisation what the encoder sees) travels with the weights: `save_weights` records
``weights["variant"]`` in the manifest (``"variant": {"skip", "skip_source", "input_norm"}``), and a
training checkpoint's variant is read from its ``meta`` item's config (the JSON file Orbax writes
as ``meta/metadata``). `load_weights` puts it back, so every consumer rebuilds the right network.
No record means the plain decoder, as for everything written before variants existed.

The model packaged with adain-jax (`adain_jax.pretrained`) is such a directory, stored in float16.
Random weights are used only when asked for by name (``--weights random``, `RANDOM`). `describe`
names the model a directory holds, for every command's first line, ``adain-jax info`` and the demo
sheet.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import tempfile
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from adain_jax.model import architecture, networks, variants
from adain_jax.model.variants import Weights

MANIFEST = "manifest.json"
RANDOM = "random"  # the --weights name of randomly initialised weights (networks.init_weights, seed 0)
WEIGHTS_FILE = "weights.npz"
FORMAT = "adain-jax-weights/2"  # 1: the weights as an Orbax item ``weights/`` (still read)
# The training-checkpoint layout, WORKDIR/CHECKPOINTS/<step>/<item>/: named here only (train/checkpointing.py
# maps the train state onto these items). Orbax names each step directory by its number and renames it
# into place only once every item is written.
CHECKPOINTS = "checkpoints"
WEIGHTS_ITEM = "weights"  # {"encoder", "decoder"} as Orbax item (format-1 weights directories too)
TRAIN_STATE_ITEM = "train_state"  # {"step", "opt_state"}
META_ITEM = "meta"  # JSON: data position, seed, config
META_FILE = "metadata"  # the file Orbax's JsonSave writes in the meta item


def _checkpointer():
    import orbax.checkpoint as ocp  # imported lazily: it costs about a second at start-up

    return ocp.StandardCheckpointer()


def save_weights(weights: Weights, directory, manifest: Mapping[str, Any] | None = None, *,
                 dtype: Any = np.float32) -> pathlib.Path:
    """Write a weights directory atomically: built in a temporary sibling, then renamed into place.

    An existing ``directory`` is replaced only once the new one is complete. The weights' decoder
    variant, if any, is recorded in the manifest. ``dtype=np.float16`` halves the file (the packaged
    model); `load_weights` returns float32 either way.
    """
    directory = pathlib.Path(directory).absolute()
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        arrays = {"/".join(str(k.key) for k in path): np.asarray(leaf, np.float32).astype(dtype)
                  for path, leaf in jax.tree_util.tree_leaves_with_path(weights)}
        with open(tmp / WEIGHTS_FILE, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub lets **kwds reach allow_pickle: bool
            f.flush()
            os.fsync(f.fileno())
        shapes = {key: "x".join(map(str, value.shape)) for key, value in arrays.items()}
        full = {"format": FORMAT, **(dict(manifest) if manifest else {}), "shapes": shapes,
                "dtype": np.dtype(dtype).name}
        variant = variants.of(weights)
        if not variant.is_plain:
            full["variant"] = variant.to_json()
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


def _abstract_weights(full_vgg: bool, variant: variants.DecoderVariant = variants.PLAIN) -> Weights:
    # This process's first device as the target: without a sharding, Orbax refuses a checkpoint written
    # on another device topology (training on several devices or processes) with "Topology mismatch".
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])

    def layer(spec):
        return {"kernel": jax.ShapeDtypeStruct(spec.flax_kernel_shape, np.float32, sharding=sharding),
                "bias": jax.ShapeDtypeStruct((spec.out_channels,), np.float32, sharding=sharding)}

    encoder_specs = architecture.ENCODER + (architecture.VGG_TAIL if full_vgg else ())
    return {"encoder": {s.name: layer(s) for s in encoder_specs},
            "decoder": {s.name: layer(s) for s in variants.decoder_specs(variant)}}


def checkpoint_dir(workdir, step: int) -> pathlib.Path:
    """``WORKDIR/checkpoints/<step>``: where training checkpoint ``step`` of ``workdir`` lives."""
    return pathlib.Path(workdir) / CHECKPOINTS / str(int(step))


def checkpoint_steps(workdir, item: str = WEIGHTS_ITEM) -> list[int]:
    """The complete training checkpoints of ``workdir``, oldest first: step directories holding ``item``
    (the decoder's weights by default; a StyleGAN run's ``generator``).

    Saves still being written are not listed: Orbax writes them under a temporary name.
    """
    directory = pathlib.Path(workdir) / CHECKPOINTS
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir()
                  if p.name.isdigit() and (p / item).is_dir())


def is_random(directory) -> bool:
    """Whether ``directory`` is the name `RANDOM` rather than a path."""
    return str(directory) == RANDOM


def resolve_weights_dir(directory) -> pathlib.Path:
    """The directory whose ``weights/`` item to read: DIR itself, or its latest training checkpoint."""
    directory = pathlib.Path(directory)
    if not directory.exists():
        raise FileNotFoundError(f"{directory}: no such weights directory (convert the official files with "
                                "`python -m convert.vgg_to_flax`, or pass a training workdir)")
    if (directory / WEIGHTS_FILE).is_file() or (directory / WEIGHTS_ITEM).is_dir():
        return directory
    steps = checkpoint_steps(directory)
    if steps:
        return checkpoint_dir(directory, steps[-1])
    raise FileNotFoundError(f"{directory}: holds neither converted weights ({WEIGHTS_FILE} and {MANIFEST}) "
                            f"nor training checkpoints ({CHECKPOINTS}/<step>/{WEIGHTS_ITEM})")


def read_variant(source) -> variants.DecoderVariant:
    """The decoder variant recorded in a weights directory's manifest or a checkpoint step's meta config."""
    source = pathlib.Path(source)
    try:
        meta = source / META_ITEM / META_FILE
        if meta.is_file():
            record = (json.loads(meta.read_text()) or {}).get("config")
        else:
            manifest = read_manifest(source)
            record = manifest.get("variant", manifest.get("config"))
        return variants.DecoderVariant.from_json(record if isinstance(record, dict) else None)
    except (ValueError, OSError) as e:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{source}: unreadable decoder variant record ({e})") from e


def load_weights(directory) -> Weights:
    """Read weights written by the converter or by training; returns the pytree `stylize` takes.

    ``directory`` may be a converter output, a checkpoint step, a training workdir (its latest
    checkpoint is used), or `RANDOM` (randomly initialised weights of the same shapes, seed 0). Only
    the layers up to relu4_1 are returned, even from a --full-vgg file. A decoder variant recorded
    with the weights comes back as ``weights["variant"]``.
    """
    if is_random(directory):
        return networks.init_weights(0)
    source = resolve_weights_dir(directory)
    variant = read_variant(source)
    specs = variants.decoder_specs(variant)
    if (source / WEIGHTS_FILE).is_file():
        restored = _read_npz(source / WEIGHTS_FILE, specs)
    else:
        item = source / WEIGHTS_ITEM
        # Only a converter output made with --full-vgg holds the VGG tail; its manifest says so.
        full_vgg = bool(read_manifest(source).get("full_vgg", False))
        ckptr = _checkpointer()
        try:
            restored = ckptr.restore(item, _abstract_weights(full_vgg, variant))
        except Exception as e:  # Orbax/tensorstore raise many types for damaged files; report them all alike
            raise ValueError(f"{item}: not a readable adain-jax weights checkpoint ({type(e).__name__}: {e})") from e
        finally:
            ckptr.close()
    # The VGG tail of a --full-vgg file is dropped: nothing downstream uses it.
    restored = {"encoder": {s.name: restored["encoder"][s.name] for s in architecture.ENCODER},
                "decoder": {s.name: restored["decoder"][s.name] for s in specs}}
    # On the device once, not re-transferred by every `stylize` call.
    return variants.attach(jax.device_put(restored), variant)


def _read_npz(path: pathlib.Path, decoder_specs=architecture.DECODER) -> Weights:
    """The encoder (up to relu4_1) and decoder arrays of a ``weights.npz``, each checked for shape and dtype
    (float32, or float16 as the packaged model is stored; returned as float32)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except Exception as e:  # zipfile, numpy and OS errors alike: the file is not what it should be
        raise ValueError(f"{path}: not a readable adain-jax weights file ({type(e).__name__}: {e})") from e
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {"encoder": {}, "decoder": {}}
    for network, specs in (("encoder", architecture.ENCODER), ("decoder", decoder_specs)):
        for spec in specs:
            for name, shape in (("kernel", spec.flax_kernel_shape), ("bias", (spec.out_channels,))):
                key = f"{network}/{spec.name}/{name}"
                value = arrays.get(key)
                if value is None:
                    raise ValueError(f"{path}: {key} is missing; not an adain-jax weights file")
                if value.shape != shape or value.dtype not in (np.float32, np.float16):
                    raise ValueError(f"{path}: {key} has shape {value.shape} and dtype {value.dtype}, "
                                     f"expected {shape} float32 or float16")
                if not np.all(np.isfinite(value)):
                    raise ValueError(f"{path}: {key} holds NaN or infinite values")
                out[network].setdefault(spec.name, {})[name] = value.astype(np.float32)
    return {"encoder": out["encoder"], "decoder": out["decoder"]}


def read_manifest(directory) -> dict:
    path = pathlib.Path(directory) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def describe(directory) -> dict:
    """What a weights directory holds, from its manifest alone (no arrays are read): the directory
    actually read (a workdir's latest checkpoint), whether every source file is an official release
    file, each source's git blob id, its ``kind`` ("official", "packaged", "random" or "other") and
    ``model``, a one-line name of the model for a person. Raises FileNotFoundError like
    `resolve_weights_dir`."""
    if is_random(directory):
        return {"directory": RANDOM, "resolved": RANDOM, "official": False, "sources": {}, "kind": "random",
                "model": "RANDOM WEIGHTS (asked for with --weights random): not a style transfer model"}
    resolved = resolve_weights_dir(directory)
    manifest = read_manifest(resolved)
    sources = manifest.get("sources", {})
    official = bool(sources) and all(s.get("official") for s in sources.values())
    packaged = manifest.get("packaged")
    if official:
        kind, model = "official", f"the official AdaIN weights (converted, {resolved})"
    elif isinstance(packaged, dict):
        kind = "packaged"
        model = (f"the packaged model {packaged.get('name')} ({packaged.get('summary')}; "
                 "the official weights, when converted to weights/flax, are better)")
    else:
        kind, model = "other", f"weights from {resolved}" + (f" ({manifest['note']})" if manifest.get("note") else "")
    return {"directory": str(directory), "resolved": str(resolved), "official": official, "kind": kind,
            "model": model,
            "sources": {name: {"file": s.get("file"), "git_blob_id": s.get("git_blob_id"),
                               "official": bool(s.get("official"))} for name, s in sources.items()}}
