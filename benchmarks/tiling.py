"""Tiled against untiled stylization, and the PyTorch port untiled: peak memory and time per size.

    python -m benchmarks.tiling [--sizes 1024 2048 4096] [--tile 512] [--threads N]

Every case (size x {jax untiled, jax tiled, torch eager untiled}) runs in a fresh subprocess, so its
peak resident memory (VmHWM: the process's high-water mark, compilation included) is its own. Same
seeded random weights in the official layout, same content (size x size) and style (512 x 512)
images, same thread count on every side. Each child does one warm-up call and then times
``--repeats`` calls; the table gives the median. The tiled output is compared with the untiled ones
(max |diff| on [0, 1]). A case whose estimated untiled peak exceeds the available memory is skipped
and marked so, instead of pushing a shared machine into swap or the OOM killer.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
CASES = ("jax", "jax_tiled", "torch_eager")
STYLE_SIZE = 512
# Bytes per content pixel of an untiled run (measured peaks at 2048^2: 576 and 806, rounded up), for
# skipping cases that cannot fit: PyTorch eager keeps more full-resolution activations alive.
UNTILED_BYTES_PER_PIXEL = {"jax": 700, "torch_eager": 900}


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.tiling", description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    p.add_argument("--tile", type=int, default=512, help="tile size of the tiled case (default 512)")
    p.add_argument("--threads", type=int, default=None, help="cores for every side (default: all)")
    p.add_argument("--repeats", type=int, default=1,
                   help="timed calls after the warm-up (default 1; 0: time the first call, compilation included)")
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    p.add_argument("--json", type=pathlib.Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--child", choices=CASES, help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--workdir", type=pathlib.Path, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmHWM``: peak resident, ``VmRSS``: resident now), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _hwm_mb() -> float:
    return _status_mb("VmHWM")


def _rss_mb() -> float:
    return _status_mb("VmRSS")


def child_main(args) -> int:
    from benchmarks.fixtures import configure_threads

    threads = configure_threads(args.threads)
    from benchmarks import fixtures

    vgg_sd, dec_sd, _ = fixtures.load(args.workdir / "weights.npz")
    content = np.load(args.workdir / f"content{args.size}.npy")
    style = np.load(args.workdir / "style.npy")
    if args.child.startswith("jax"):
        from benchmarks.jax_side import JaxSide  # imports adain_jax first (XLA flags)

        side = JaxSide(vgg_sd, dec_sd)
        if args.child == "jax_tiled":
            from adain_jax import tiling

            def call():
                return tiling.stylize_tiled(side.weights, content, style, tile=args.tile)
        else:
            c, s = side.inputs(content), side.inputs(style)

            def call():
                return np.asarray(side.stylize(c, s))
    else:
        import torch

        torch.set_num_threads(threads)
        from benchmarks.torch_side import TorchSide

        side = TorchSide(vgg_sd, dec_sd, "eager")
        c, s = side.inputs(content), side.inputs(style)

        def call():
            return side.to_numpy(side.stylize(c, s))

    setup = _rss_mb()
    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(args.repeats):
        del out
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    np.save(args.workdir / f"out_{args.child}_{args.size}.npy", out)
    print(json.dumps({"case": args.child, "size": args.size, "threads": threads, "first_s": first,
                      # --repeats 0: the first call's time, compilation included (big sizes on a slow machine)
                      "median_s": statistics.median(times) if times else first,
                      "setup_rss_mb": setup, "peak_rss_mb": _hwm_mb()}),
          flush=True)
    return 0


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def _run_child(args, case: str, size: int, workdir: pathlib.Path) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.tiling", "--child", case, "--size", str(size), "--workdir",
           str(workdir), "--tile", str(args.tile), "--repeats", str(args.repeats)]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "ADAIN_JAX_CACHE_DIR": "off"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"case": case, "size": size, "error": f"exit {proc.returncode}: " + (proc.stderr or proc.stdout)[-1500:]}
    return json.loads(lines[-1])


def markdown(rows: list[dict], tile: int) -> str:
    head = ("| size | case | time (s) | peak RSS (MB) | RSS before the call (MB) | max abs diff vs jax untiled |\n"
            "| --- | --- | ---: | ---: | ---: | ---: |")
    lines = [head]
    for r in rows:
        name = {"jax": "adain-jax untiled", "jax_tiled": f"adain-jax tiled ({tile} px)",
                "torch_eager": "PyTorch eager untiled"}[r["case"]]
        if "error" in r or "skipped" in r:
            lines.append(f"| {r['size']}^2 | {name} | - | - | - | {r.get('skipped') or 'failed'} |")
            continue
        diff = r.get("max_abs_diff")
        lines.append(f"| {r['size']}^2 | {name} | {r['median_s']:.2f} | {r['peak_rss_mb']:.0f} | "
                     f"{r['setup_rss_mb']:.0f} | {'-' if diff is None else f'{diff:.1e}'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    from adain_jax import extras

    extras.exit_if_missing("bench", "python -m benchmarks.tiling")
    from benchmarks import fixtures

    rows = []
    with tempfile.TemporaryDirectory(prefix="adain-tiling-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        fixtures.save(workdir / "weights.npz", *fixtures.state_dicts())
        np.save(workdir / "style.npy", fixtures.images(fixtures.SEED + 1, 1, STYLE_SIZE))
        for size in args.sizes:
            np.save(workdir / f"content{size}.npy", fixtures.images(fixtures.SEED, 1, size))
            for case in args.cases:
                need = UNTILED_BYTES_PER_PIXEL.get(case, 0) * size * size
                if need > 0.85 * _available_bytes():
                    rows.append({"case": case, "size": size, "skipped": f"skipped: needs ~{need / 2**30:.0f} GiB"})
                    print(f"{size}: {case} skipped (estimated {need / 2**30:.1f} GiB)", file=sys.stderr, flush=True)
                    continue
                print(f"{size}: {case} ...", file=sys.stderr, flush=True)
                row = _run_child(args, case, size, workdir)
                rows.append(row)
                print("  " + json.dumps(row), file=sys.stderr, flush=True)
            ref_path = workdir / f"out_jax_{size}.npy"
            for row in rows:
                out_path = workdir / f"out_{row['case']}_{size}.npy"
                if row["size"] == size and row["case"] != "jax" and ref_path.exists() and out_path.exists():
                    row["max_abs_diff"] = float(np.abs(np.load(out_path) - np.load(ref_path)).max())
            for path in workdir.glob(f"*{size}.npy"):
                path.unlink()
    table = markdown(rows, args.tile)
    print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
