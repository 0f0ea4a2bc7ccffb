"""The ``adain-jax`` command: one module per subcommand, each with ``add_arguments`` and ``run``.

    adain-jax stylize --content photo.jpg --style a.jpg,b.jpg --style-weights 0.3,0.7
    adain-jax demo                      # example pairs + contact sheet in outputs/
    adain-jax info                      # versions, backend and devices, weights, installed extras
    adain-jax video | stylize-dataset | serve | eval | gatys | export ...   (adain-jax CMD --help)

Shared argument types and defaults live in `adain_jax.cli.options`.

Parsing imports only argparse-level code; JAX, Flax and Orbax load once a subcommand runs, so
``--help`` and argument errors answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import os
import sys
import threading
from collections.abc import Sequence

# Subcommand name -> module under adain_jax.cli (HELP, DESCRIPTION, optional EPILOG, add_arguments, run).
COMMANDS = {
    "stylize": "stylize",
    "stylize-dataset": "stylize_dataset",
    "video": "video",
    "demo": "demo",
    "serve": "serve",
    "eval": "eval",
    "gatys": "gatys",
    "export": "export",
    "generate": "generate",
    "info": "info",
}

# Subcommand -> the optional extra it needs, checked before any work starts (one line, exit 2).
# `export` needs its extra only for --format onnx and checks that itself.
EXTRAS = {"video": "video", "serve": "serve"}


def _module(name: str):
    return importlib.import_module(f"adain_jax.cli.{COMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="adain-jax",
        description="AdaIN arbitrary style transfer (Huang & Belongie 2017) in JAX, numerically identical "
                    "to the PyTorch port.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        module = _module(name)
        command = sub.add_parser(name, help=module.HELP, description=module.DESCRIPTION,
                                 epilog=getattr(module, "EPILOG", None),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default: the process's arguments) and run the subcommand; returns the exit status."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run the parsed subcommand; returns the exit status."""
    from adain_jax import compilation_cache, extras

    if args.command in EXTRAS:
        extras.exit_if_missing(EXTRAS[args.command], f"adain-jax {args.command}")
    if getattr(args, "weights", None) is not None:
        from adain_jax.cli import options

        line = options.model_line(args.weights)  # which model runs, before anything else is said
        if line:
            print(line, file=sys.stderr, flush=True)

    # Each new image size compiles for seconds on CPU; a later run meeting it again loads it from
    # disk ($ADAIN_JAX_CACHE_DIR, default ~/.cache/adain-jax/xla; "off" disables).
    compilation_cache.enable()
    return _module(args.command).run(args)


def console() -> None:
    """The ``adain-jax`` executable: `main` with a one-shot process's start and end made cheap.

    Importing JAX creates about a million objects and no garbage: the cyclic collector, running
    over them again and again while they are made, costs about 0.05 s; so it is off while JAX
    loads, and what was loaded is then frozen out of later collections. And tearing down a process
    that imported JAX (freeing its modules and XLA's runtime) takes about 0.15 s, of which nothing
    is needed once every output is written and closed: so, as the interpreter would, wait for
    non-daemon threads, run the atexit handlers and flush the standard streams, then end at once.
    """
    try:
        args = build_parser().parse_args()
        gc.disable()
        try:
            import jax  # noqa: F401  # what every subcommand computes with
        finally:
            gc.enable()
        gc.freeze()
        status = run(args)
    except SystemExit as e:  # argparse's usage errors and --help, extras.exit_if_missing
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe (e.g. `| head`): nothing more to say
            stream.flush()
    os._exit(status)
