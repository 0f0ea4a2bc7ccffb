"""Command line of training: ``python -m train.main --workdir DIR --config train/configs/default.py``.

Keys of the config can be overridden with ``--config.key=value`` (e.g. ``--config.vgg=weights/flax
--config.style=/data/wikiart --config.num_steps=1000``). Running the same command again resumes from
the latest checkpoint in DIR. A bad setup (missing VGG weights, a missing or empty data folder) is
reported as one line, ``error: ...``, with exit status 2. See docs/training.md.
"""

from __future__ import annotations

import pathlib
import sys

import adain_jax  # noqa: F401  first: sets the fast XLA:CPU flags before anything starts JAX's backend
from absl import app, flags, logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics.jsonl, TensorBoard events, samples.")
config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).parent / "configs" / "default.py"),
    "Training configuration file (train/configs/*.py).", lock_config=True)
flags.mark_flags_as_required(["workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    import jax

    if FLAGS.config.distributed:
        jax.distributed.initialize()  # coordinator, process count and id from the cluster environment
    logging.info("JAX process %d/%d, local devices %s", jax.process_index(), jax.process_count(),
                 jax.local_devices())

    from train import train
    from train.errors import SetupError

    try:
        train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
