"""``python -m adain_jax.cli`` = ``adain-jax``."""

from adain_jax.cli import console

console()
