"""``adain-jax info``: what this installation would run with, as text or JSON.

    adain-jax info            # versions, backend and devices, XLA:CPU setting, weights, extras
    adain-jax info --json

Answers the first questions of a new machine: did the GPU/TPU plugin load (backend and devices),
which weights a command would use, which model they hold (the official files, the model packaged with
adain-jax, or other weights) with the manifest's git blob ids, and which optional extras are installed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import pathlib

from adain_jax.cli import options

HELP = "print versions, backend and devices, the XLA:CPU setting, the weights in use and installed extras"
DESCRIPTION = ("Print what this installation runs with: adain-jax, jax, jaxlib and flax versions, the JAX backend "
               "and its devices, the XLA:CPU setting adain-jax applied, the weights a command would use (official "
               "or not, with the manifest's git blob ids) and which optional extras are installed.")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_weights_argument(parser, "the one to describe")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def collect(weights_dir: pathlib.Path) -> dict:
    """The report as a JSON-able dict."""
    import jax

    from adain_jax import compilation_cache, extras, xla_flags
    from adain_jax.io import weights as weights_lib

    devices = jax.devices()
    try:
        weights = {"found": True, **weights_lib.describe(weights_dir)}
    except (FileNotFoundError, ValueError, OSError) as e:
        weights = {"found": False, "directory": str(weights_dir), "official": False, "error": str(e)}
    cache = compilation_cache.default_dir()
    return {
        "versions": {name: _version(name) for name in ("adain-jax", "jax", "jaxlib", "flax")},
        "backend": jax.default_backend(),
        "devices": [{"id": d.id, "platform": d.platform, "kind": d.device_kind} for d in devices],
        "device_count": len(devices),
        "process_count": jax.process_count(),
        "xla_cpu": {"status": xla_flags.status, "XLA_FLAGS": os.environ.get(xla_flags.ENV, "")},
        "compilation_cache": str(cache) if cache else None,
        "weights": weights,
        "extras": {name: {"installed": not absent, "missing": absent, "install": extras.install_command(name)}
                   for name, absent in extras.installed().items()},
    }


def format_text(report: dict) -> str:
    v = report["versions"]
    kinds = sorted({d["kind"] for d in report["devices"]})
    lines = [
        "versions: " + ", ".join(f"{name} {v[name] or 'not installed'}" for name in v),
        (f"backend: {report['backend']} ({report['device_count']} device(s): {', '.join(kinds)}; "
         f"{report['process_count']} process(es))"),
        f"XLA:CPU: {report['xla_cpu']['status']} (XLA_FLAGS={report['xla_cpu']['XLA_FLAGS'] or '(unset)'})",
        f"compilation cache: {report['compilation_cache'] or 'off'}",
    ]
    w = report["weights"]
    if not w["found"]:
        lines.append(f"weights: none usable at {w['directory']} ({w['error']}); commands that need them exit "
                     "(--weights random runs random weights)")
    else:
        lines.append(f"weights: {w['resolved']} ({'official' if w['official'] else 'NOT the official release files'})")
        lines.append(f"  model: {w['model']}")
        lines += [f"  {name}: {s['file']} git blob {s['git_blob_id']}" for name, s in w["sources"].items()]
    lines.append("extras: " + ", ".join(f"{name} {'yes' if e['installed'] else 'no'}"
                                        for name, e in report["extras"].items()))
    return "\n".join(lines)


def run(args) -> int:
    report = collect(args.weights)
    print(json.dumps(report, indent=2) if args.json else format_text(report))
    return 0
