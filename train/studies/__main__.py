"""``python -m train.studies --study NAME --workdir W [--config.KEY=VALUE ...] [--random_vgg] [--variants a,b]``.

Studies: skip, style_weight, alpha_grid, input_norm, statistics (train/studies/definitions.py). The base
config is train/configs/study.py (CPU-sized); ``--config.KEY=VALUE`` overrides it as for train.main. The
VGG is ``--config.vgg=DIR``, or ``--random_vgg`` for seeded random weights (the report says so in bold).
Running the same command again resumes: finished variants are not retrained. A bad setup gives one
``error:`` line and exit status 2. See docs/studies.md.
"""

from __future__ import annotations

import pathlib
import shlex
import sys

import adain_jax  # noqa: F401  first: sets the fast XLA:CPU flags before anything starts JAX's backend
from adain_jax import extras

extras.exit_if_missing("train", "python -m train.studies")  # one line, not a traceback, without the train extra
from absl import app, flags  # noqa: E402
from ml_collections import config_flags

from train.studies import definitions

FLAGS = flags.FLAGS
flags.DEFINE_enum("study", None, list(definitions.STUDIES), "Which study to run.")
flags.DEFINE_string("workdir", None, "Directory of the study: W/<variant> workdirs, W/report.md and its figures.")
flags.DEFINE_bool("random_vgg", False, "Use seeded random VGG weights (W/random-vgg) instead of --config.vgg: "
                  "checks the machinery only, and the report says so.")
flags.DEFINE_string("variants", "", "Comma-separated subset of the study's variants (default: all).")
config_flags.DEFINE_config_file(
    "config", str(pathlib.Path(__file__).resolve().parents[1] / "configs" / "study.py"),
    "Base training configuration of every variant (train/configs/*.py).", lock_config=True)
flags.mark_flags_as_required(["study", "workdir"])


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    from train.errors import SetupError
    from train.studies import runner

    command = " ".join(shlex.quote(a) for a in ["python", "-m", "train.studies", *sys.argv[1:]])
    try:
        runner.run_study(FLAGS.study, FLAGS.config, FLAGS.workdir, variants=FLAGS.variants,
                         random_vgg=FLAGS.random_vgg, command=command)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
