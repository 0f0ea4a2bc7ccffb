"""Command line of training: ``python -m train.main --workdir DIR --config train/configs/default.py``.

Keys of the config can be overridden with ``--config.key=value`` (e.g. ``--config.vgg=weights/flax
--config.style=/data/wikiart --config.num_steps=1000``). Running the same command again resumes from
the latest checkpoint in DIR. ``config.model`` picks the run: absent or ``"adain"`` the AdaIN decoder
(`train.train`), ``"stylegan"`` the style-based generator (`train.gan`, train/configs/stylegan_*.py). A bad setup (missing VGG weights, a missing or empty data folder, a
multi-process start that cannot work) is reported as one line, ``error: ...``, with exit status 2.

Several processes (hosts): the same command in every process with ``--config.distributed=True``.
The coordinator address, process count and process id come from ``--config.coordinator_address``,
``--config.num_processes``, ``--config.process_id``, else from ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``, else from the detected cluster (`adain_jax.distributed`).
If another process dies, this one prints one ``error:`` line and exits with status 1. See
docs/training.md.
"""

from __future__ import annotations

import pathlib
import sys

import adain_jax  # noqa: F401  first: sets the fast XLA:CPU flags before anything starts JAX's backend
from adain_jax import extras

extras.exit_if_missing("train", "python -m train.main")  # one line, not a traceback, without the train extra
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, TensorBoard events, samples.")
config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).parent / "configs" / "default.py"),
    "Training configuration file (train/configs/*.py).", lock_config=True)
flags.mark_flags_as_required(["workdir"])

# Config keys of the multi-process start (train/configs/default.py) and their "not set" values (then
# the environment or the cluster decides).
DISTRIBUTED_KEYS = {"coordinator_address": "", "num_processes": 0, "process_id": -1}


def distributed_settings(config):
    """`adain_jax.distributed.Settings` from the config (and the environment); DistributedSetupError."""
    from adain_jax import distributed

    values = {key: config[key] for key in DISTRIBUTED_KEYS}
    given = [key for key, value in values.items() if value != DISTRIBUTED_KEYS[key] and value is not None]
    if not config.distributed:
        if given:
            raise distributed.DistributedSetupError(
                f"config.{given[0]} is set but config.distributed is False: add --config.distributed=True "
                "to start several processes")
        return None
    return distributed.resolve(
        **{key: None if key not in given else values[key] for key in values},
        names={key: f"--config.{key}" for key in DISTRIBUTED_KEYS},
        initialization_timeout=config.coordinator_timeout, heartbeat_timeout=config.heartbeat_timeout)


MODELS = {"adain": "train.train", "stylegan": "train.gan"}  # config.model -> the module of its run


def run_training(config, workdir):
    """``train_and_evaluate`` of the run ``config.model`` names (absent: the AdaIN decoder)."""
    import importlib

    from train.errors import SetupError

    model = config.get("model", "adain")
    if model not in MODELS:
        raise SetupError(f"config.model must be one of {', '.join(sorted(MODELS))}, got {model!r}")
    return importlib.import_module(MODELS[model]).train_and_evaluate(config, workdir)


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    from adain_jax import distributed

    try:
        settings = distributed_settings(FLAGS.config)
        if settings is not None:
            # Before anything else touches JAX: the backend must start knowing the other processes.
            distributed.initialize(settings)
    except distributed.DistributedSetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    import jax

    logging.info("JAX process %d/%d, local devices %s", jax.process_index(), jax.process_count(),
                 jax.local_devices())

    from train.errors import SetupError

    try:
        run_training(FLAGS.config, FLAGS.workdir)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        if jax.process_count() > 1:
            distributed.exit_now(2)  # the others cannot go on without this process; do not wait for them
        sys.exit(2)
    except Exception as e:
        if jax.process_count() == 1:
            raise
        # Another process died (or this one failed): no process can go on. Exit now, so that the
        # others see this one go at once, instead of waiting at JAX's shutdown barrier.
        if distributed.is_peer_failure(e):
            print(f"error: {distributed.peer_failure_message(e, jax.process_index(), jax.process_count())}",
                  file=sys.stderr)
        else:
            logging.exception("Process %d of %d failed", jax.process_index(), jax.process_count())
        distributed.exit_now(1)


if __name__ == "__main__":
    app.run(main)
