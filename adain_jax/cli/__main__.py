"""``python -m adain_jax.cli`` = ``adain-jax``."""

import sys

from adain_jax.cli import main

sys.exit(main())
