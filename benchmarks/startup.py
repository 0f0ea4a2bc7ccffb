"""``python -m benchmarks.startup``: what a one-shot ``adain-jax stylize`` spends outside its computation.

    python -m benchmarks.startup                                   # packaged example pair, random weights
    python -m benchmarks.startup --content cornell.jpg --style woman_with_hat_matisse.jpg --content-size 360

Runs the command as a whole process (one warm-up run fills the compilation caches, then ``--runs``
counted runs, each timed by ``/usr/bin/time`` for wall time and peak RSS, or by the OS's accounting
of the child where that is missing), and the same computation in this process once it is warm:
the style's encoding at its size and the transfer, ``--runs`` times after one warm-up. The
difference of the medians is the command's cost outside the computation (interpreter, imports,
caches, weights, images, output, exit). Two floors give it scale: an empty interpreter and
``import jax``. Weights are random unless ``--weights`` names a directory: speed does not depend
on their values.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from adain_jax import examples

TIME = "/usr/bin/time"


def _first(folder: pathlib.Path) -> pathlib.Path:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[0]


def whole_process(command: list[str], runs: int, env: dict) -> list[tuple[float, float]]:
    """(wall seconds, peak RSS MiB) of ``runs`` runs after one warm-up."""
    results = []
    for i in range(runs + 1):
        if os.path.exists(TIME):
            with tempfile.NamedTemporaryFile("r", suffix=".txt") as report:
                proc = subprocess.run([TIME, "-f", "%e %M", "-o", report.name, *command], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                wall, rss_kib = report.read().split()[-2:]
                measured = (float(wall), float(rss_kib) / 1024)
        else:  # wall time from here; peak RSS from the OS's accounting of the finished child
            start = time.perf_counter()
            pid = os.posix_spawn(command[0], command, env)
            _, status, usage = os.wait4(pid, 0)
            measured = (time.perf_counter() - start, usage.ru_maxrss / 1024)
            proc = subprocess.CompletedProcess(command, os.waitstatus_to_exitcode(status), stderr="")
        if proc.returncode != 0:
            raise SystemExit(f"error: {' '.join(command)} exited with {proc.returncode}: {proc.stderr[-2000:]}")
        if i:
            results.append(measured)
    return results


def warm_computation(weights_dir: str, content: str, style: str, content_size: int, style_size: int,
                     runs: int) -> list[float]:
    """Seconds of the style encoding + transfer in this process, after one warm-up."""
    import jax

    from adain_jax import runner
    from adain_jax.io import weights as weights_lib

    weights = weights_lib.load_weights(weights_dir)
    image = runner.Stylizer(weights, content_size=content_size).content(content)
    times = []
    for i in range(runs + 1):
        # A new Stylizer has no cached style statistics: the style is encoded every time, as a one-shot
        # command does (its image is read before the clock starts: reading files is not computation).
        stylizer = runner.Stylizer(weights, content_size=content_size, style_size=style_size)
        stylizer.style(style)
        start = time.perf_counter()
        jax.block_until_ready(stylizer.run(image, [style]))
        if i:
            times.append(time.perf_counter() - start)
    return times


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    packaged = examples.PACKAGED
    parser.add_argument("--content", default=str(_first(packaged / "content")))
    parser.add_argument("--style", default=str(_first(packaged / "style")))
    parser.add_argument("--content-size", type=int, default=360)
    parser.add_argument("--style-size", type=int, default=512)
    parser.add_argument("--weights", default=None, help="weights directory (default: random weights)")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    scratch = pathlib.Path(tempfile.mkdtemp(prefix="adain-startup-"))
    try:
        weights = args.weights
        if weights is None:
            import adain_jax

            weights = str(adain_jax.save_weights(adain_jax.init_weights(0), scratch / "weights",
                                                 {"note": "random weights (benchmarks.startup)"}))
        script = pathlib.Path(sys.executable).with_name("adain-jax")
        cli = [str(script)] if script.exists() else [sys.executable, "-m", "adain_jax.cli"]
        command = [*cli, "stylize", "--content", args.content, "--style", args.style, "--weights", weights,
                   "--content-size", str(args.content_size), "--style-size", str(args.style_size),
                   "--output", str(scratch / "out")]
        env = dict(os.environ)
        rows = {
            "python -c pass": whole_process([sys.executable, "-c", "pass"], args.runs, env),
            "python -c 'import jax'": whole_process([sys.executable, "-c", "import jax"], args.runs, env),
            "adain-jax stylize": whole_process(command, args.runs, env),
        }
        warm = warm_computation(weights, args.content, args.style, args.content_size, args.style_size, args.runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    print(f"adain-jax stylize {pathlib.Path(args.content).name} (shorter side {args.content_size}) with "
          f"{pathlib.Path(args.style).name} (shorter side {args.style_size}); "
          f"{'random weights' if args.weights is None else args.weights}; {args.runs} runs, warm caches\n")
    print("| run | wall s (median) | min | max | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for name, results in rows.items():
        walls = [w for w, _ in results]
        print(f"| {name} | {statistics.median(walls):.3f} | {min(walls):.3f} | {max(walls):.3f} | "
              f"{statistics.median(r for _, r in results):.0f} |")
    print(f"| same computation, warm process | {statistics.median(warm):.3f} | {min(warm):.3f} | "
          f"{max(warm):.3f} | |")
    outside = statistics.median(w for w, _ in rows["adain-jax stylize"]) - statistics.median(warm)
    print(f"\noutside the computation: {outside:.3f} s (whole process - warm computation, medians)")


if __name__ == "__main__":
    main()
