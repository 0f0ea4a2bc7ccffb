"""The error raised for a bad training setup: missing or empty data, missing VGG weights, bad config.

`train.main` prints it as one line (``error: <path>: <problem>``) and exits with status 2 instead of
showing a traceback, since the fix is always on the user's side.
"""

from __future__ import annotations


class SetupError(Exception):
    """A problem with the user's inputs, as one line that names the path or config key involved."""
