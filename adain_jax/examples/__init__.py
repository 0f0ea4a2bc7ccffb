"""The example images shipped inside the package (see SOURCES.md) and which example set is in force.

An example set is a folder with ``content/`` and ``style/`` (and optionally ``mask/``) subfolders.
``$ADAIN_JAX_EXAMPLES`` names another set (the demo, the web app and the tiny training config take
it); otherwise the packaged public-domain/CC0 images are used, so a plain clone or an installed
wheel always has inputs.
"""

from __future__ import annotations

import os
import pathlib

PACKAGED = pathlib.Path(__file__).resolve().parent
ENV_VAR = "ADAIN_JAX_EXAMPLES"


def directory() -> pathlib.Path:
    """The example set in force: ``$ADAIN_JAX_EXAMPLES`` if set, else the packaged images."""
    chosen = os.environ.get(ENV_VAR)
    return pathlib.Path(chosen) if chosen else PACKAGED
