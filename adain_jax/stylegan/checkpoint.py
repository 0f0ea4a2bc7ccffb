"""The sampling generator on disk: what `adain-jax generate` reads from a StyleGAN training workdir.

Layout (the decoder training's, `adain_jax.io.weights`): ``WORKDIR/checkpoints/<step>/`` written by
an Orbax CheckpointManager, holding

* the item ``generator`` (StandardSave): ``{"ema": <EMA generator params>, "w_avg": (latent_dim,)}``;
* the item ``meta`` (JsonSave), whose key ``generator_config`` is the `GeneratorConfig` as a dict.

Training may store more items and meta keys beside these (optimiser state, data position, ...).
`save_generator` writes exactly these two, for tests and for exporting a generator by hand.
"""

from __future__ import annotations

import pathlib

import jax
import numpy as np

from adain_jax.io import weights as weights_lib
from adain_jax.stylegan.config import GeneratorConfig, generator_config_from_dict, to_dict
from adain_jax.stylegan.generator import init_generator

GENERATOR_ITEM = "generator"
CONFIG_KEY = "generator_config"


def generator_steps(workdir) -> list[int]:
    """The complete checkpoints of ``workdir`` that hold a generator, oldest first."""
    return weights_lib.checkpoint_steps(workdir, GENERATOR_ITEM)


def _manager(workdir):
    import orbax.checkpoint as ocp  # lazily: about a second of start-up

    directory = pathlib.Path(workdir).absolute() / weights_lib.CHECKPOINTS
    return ocp, ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(create=True))


def save_generator(workdir, step: int, ema_params: dict, cfg: GeneratorConfig, w_avg, meta: dict | None = None):
    """Write checkpoint ``step`` of ``workdir`` with the ``generator`` and ``meta`` items (synchronously)."""
    ocp, manager = _manager(workdir)
    try:
        item = {"ema": ema_params, "w_avg": jax.numpy.asarray(w_avg, np.float32)}
        full_meta = {**(meta or {}), CONFIG_KEY: to_dict(cfg)}
        manager.save(int(step), args=ocp.args.Composite(**{GENERATOR_ITEM: ocp.args.StandardSave(item),
                                                            weights_lib.META_ITEM: ocp.args.JsonSave(full_meta)}),
                     force=True)
        manager.wait_until_finished()
    finally:
        manager.close()
    return weights_lib.checkpoint_dir(workdir, step)


def load_generator(workdir, step: int | None = None) -> tuple[dict, GeneratorConfig, jax.Array]:
    """``(ema_params, cfg, w_avg)`` from checkpoint ``step`` (default: the latest) of ``workdir``.

    Raises FileNotFoundError / ValueError with one line naming the directory and the problem.
    """
    workdir = pathlib.Path(workdir)
    if not workdir.is_dir():
        raise FileNotFoundError(f"{workdir}: no such workdir")
    steps = generator_steps(workdir)
    if not steps:
        raise FileNotFoundError(f"{workdir}: not a StyleGAN training workdir (no "
                                f"{weights_lib.CHECKPOINTS}/<step>/{GENERATOR_ITEM} checkpoint)")
    step = steps[-1] if step is None else int(step)
    where = weights_lib.checkpoint_dir(workdir, step)
    if step not in steps:
        raise FileNotFoundError(f"{where}: no such generator checkpoint (steps: {steps})")
    import orbax.checkpoint as ocp

    # Plain checkpointers on the item directories: a read-only CheckpointManager would log warnings.
    meta_dir = where / weights_lib.META_ITEM
    try:
        with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as ckptr:
            meta = dict(ckptr.restore(meta_dir))
    except Exception as e:  # Orbax raises many types for a missing or damaged item; report them alike
        raise ValueError(f"{meta_dir}: unreadable checkpoint meta ({type(e).__name__}: {e})") from e
    if CONFIG_KEY not in meta:
        raise ValueError(f"{meta_dir}: no {CONFIG_KEY!r} key: not a StyleGAN checkpoint")
    try:
        cfg = generator_config_from_dict(dict(meta[CONFIG_KEY]))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{meta_dir}: bad {CONFIG_KEY}: {e}") from e
    # The first local device as the target: a checkpoint written on another topology restores here too.
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    like = {"ema": init_generator(cfg, 0), "w_avg": np.zeros((cfg.latent_dim,), np.float32)}
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, np.float32, sharding=sharding), like)
    item = where / GENERATOR_ITEM
    try:
        with ocp.StandardCheckpointer() as ckptr:
            restored = ckptr.restore(item, abstract)
    except Exception as e:
        raise ValueError(f"{item}: not a readable generator for its config ({type(e).__name__}: {e})") from e
    return restored["ema"], cfg, restored["w_avg"]
