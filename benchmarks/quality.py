"""The paper's Figure 3 and Table 1, reproduced: AdaIN against the optimisation of Gatys et al.

    python -m benchmarks.quality                          # a few pairs on the CPU, a few minutes
    python -m benchmarks.quality --pairs 500 --iterations 500 --weights weights/flax   # the paper's setting

Figure 3 (Huang & Belongie 2017): the content loss and the mean/std style loss, averaged over pairs,
at every iteration of Gatys et al. (L-BFGS from noise, optimising exactly these two losses: the
mean/std style loss "for a fair comparison" and the AdaIN target as content target), with AdaIN's
averages as level lines. Written as a PNG plot (needs matplotlib: the ``notebooks`` extra) and a
markdown table. Table 1: the time of Gatys et al. to the iteration where its mean style loss first
reaches AdaIN's, and to N iterations, against one AdaIN stylization, at 256 and 512 px. Plus a
content | style | AdaIN | Gatys picture grid.

Without ``--weights`` (or when the official weights are absent) everything runs on RANDOM weights
and says so: the absolute losses and the pictures then say nothing about the official model; the
same command on the official weights gives the real comparison. Speed does not depend on the weights.
Outputs go to ``--out`` (default benchmarks/results/quality/): figure3.png, figure3.md, table1.md,
grid.jpg, quality.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

import adain_jax  # noqa: F401  (first: applies the XLA:CPU flags before JAX starts)

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"
RANDOM_NOTE = ("RANDOM WEIGHTS: these losses and pictures say nothing about the official model; "
               "run with --weights <official converted weights> for the real comparison.")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=pathlib.Path, default=None,
                   help="converted weights directory (default: random weights, and the outputs say so)")
    p.add_argument("--contents", type=pathlib.Path, default=SHARED / "content")
    p.add_argument("--styles", type=pathlib.Path, default=SHARED / "style")
    p.add_argument("--pairs", type=int, default=4, help="number of (content, style) pairs (default 4)")
    p.add_argument("--size", type=int, default=256, help="Figure 3 image size, square crops (default 256)")
    p.add_argument("--iterations", type=int, default=100, help="Gatys iterations for Figure 3 (default 100)")
    p.add_argument("--batch", type=int, default=4, help="pairs optimised at once (default 4)")
    p.add_argument("--time-sizes", default="256,512", help="Table 1 sizes (default 256,512)")
    p.add_argument("--time-iterations", type=int, default=None,
                   help="N for Table 1's 'Gatys, N iterations' (default: --iterations)")
    p.add_argument("--repeats", type=int, default=5, help="AdaIN timing repeats, the median is kept (default 5)")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results" / "quality")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_weights(directory):
    """(weights, description, is_random)."""
    import jax

    from adain_jax.io import weights as weights_lib
    from adain_jax.model import networks

    if directory is None:
        return networks.init_weights(jax.random.key(0)), "random weights (init_weights seed 0)", True
    weights = weights_lib.load_weights(directory)
    official = weights_lib.describe(directory)["official"]
    return weights, ("official weights" if official else f"weights from {directory} (not the official ones)"), not official


def pick_pairs(contents: pathlib.Path, styles: pathlib.Path, n: int) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """n pairs spread over both folders: content i with style i * len(styles) // n (each used once if possible)."""
    from adain_jax.io import images as image_io

    cs, ss = image_io.list_images(contents), image_io.list_images(styles)
    return [(cs[i % len(cs)], ss[(i * len(ss) // max(n, 1) + i // len(ss)) % len(ss)]) for i in range(n)]


def load_pairs(pairs, size):
    from adain_jax.io import images as image_io

    content = np.stack([image_io.load_image(c, size, crop=True) for c, _ in pairs])
    style = np.stack([image_io.load_image(s, size, crop=True) for _, s in pairs])
    return content, style


def figure3(args, weights, pairs):
    """AdaIN's mean losses and Gatys' mean curves over the pairs, plus the images for the grid."""
    import jax

    from adain_jax import transfer
    from adain_jax.quality import gatys, metrics

    content, style = load_pairs(pairs, args.size)
    adain_out = np.asarray(transfer.stylize(weights, content, style))
    scores = jax.tree.map(np.asarray, metrics.evaluate(weights["encoder"], content, style, adain_out))
    gatys_out, curves = [], {"content_loss": [], "style_loss": []}
    for i in range(0, len(pairs), args.batch):
        log(f"figure 3: Gatys L-BFGS from noise, pairs {i + 1}-{min(i + args.batch, len(pairs))} of {len(pairs)}, "
            f"{args.iterations} iterations at {args.size} px")
        out, curve = gatys.gatys(weights["encoder"], content[i:i + args.batch], style[i:i + args.batch],
                                 iterations=args.iterations, optimizer="lbfgs", init="noise", style_loss="meanstd",
                                 content_target="adain", content_weight=1.0, style_weight=10.0,
                                 seed=np.arange(i, min(i + args.batch, len(pairs))))
        gatys_out.append(np.asarray(out))
        for k in curves:
            curves[k].append(np.asarray(curve[k]))
    curves = {k: np.concatenate(v) for k, v in curves.items()}  # (pairs, iterations + 1)
    gatys_final = jax.tree.map(np.asarray, metrics.evaluate(weights["encoder"], content, style,
                                                            np.concatenate(gatys_out)))
    mean_curve = {k: v.mean(axis=0) for k, v in curves.items()}
    adain_mean = {k: float(v.mean()) for k, v in scores.items()}
    below = np.nonzero(mean_curve["style_loss"] <= adain_mean["style_loss"])[0]
    match = int(below[0]) if below.size else None
    return {"content": content, "style": style, "adain": adain_out, "gatys": np.concatenate(gatys_out),
            "curves": curves, "mean_curve": mean_curve, "adain_mean": adain_mean,
            "adain_scores": scores, "gatys_scores": gatys_final, "match_iteration": match}


def figure3_table(fig, note) -> str:
    iters = len(fig["mean_curve"]["style_loss"]) - 1
    marks = sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, iters} & set(range(iters + 1)))
    if fig["match_iteration"] is not None:
        marks = sorted(set(marks) | {fig["match_iteration"]})
    lines = [f"Figure 3: mean over {fig['curves']['style_loss'].shape[0]} pairs. {note}", "",
             "| method | iteration | content loss | style loss |", "|---|---|---|---|"]
    for it in marks:
        star = " (first <= AdaIN style)" if it == fig["match_iteration"] else ""
        lines.append(f"| Gatys (L-BFGS, noise init) | {it}{star} | {fig['mean_curve']['content_loss'][it]:.4g} | "
                     f"{fig['mean_curve']['style_loss'][it]:.4g} |")
    lines.append(f"| AdaIN | - | {fig['adain_mean']['content_loss']:.4g} | {fig['adain_mean']['style_loss']:.4g} |")
    others = ", ".join(f"{k} AdaIN {fig['adain_mean'][k]:.4g} / Gatys {float(fig['gatys_scores'][k].mean()):.4g}"
                       for k in ("gram_loss", "ssim", "color_distance"))
    lines += ["", f"Other metrics (AdaIN / Gatys after {iters} iterations): {others}."]
    return "\n".join(lines)


def plot_figure3(fig, path: pathlib.Path, note: str) -> None:
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[notebooks]'); skipping the PNG plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters = np.arange(len(fig["mean_curve"]["style_loss"]))
    f, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, title in zip(axes, ("content_loss", "style_loss"), ("content loss", "style loss (mean/std)")):
        ax.plot(iters, fig["mean_curve"][key], label="Gatys et al. (L-BFGS)", color="tab:blue")
        ax.axhline(fig["adain_mean"][key], color="tab:red", linestyle="--", label="AdaIN")
        if fig["match_iteration"] is not None:
            ax.axvline(fig["match_iteration"], color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("Gatys iteration")
        ax.set_title(title)
        ax.legend()
    f.suptitle(f"Figure 3 reproduced, {fig['curves']['style_loss'].shape[0]} pairs\n{note}", fontsize=9)
    f.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    f.savefig(path, dpi=110)
    plt.close(f)


def _timed(fn, *args) -> float:
    import jax

    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def table1(args, weights, pair, match_iteration):
    """Seconds for one pair: AdaIN (median of repeats) and Gatys (one run of N iterations), compiled.

    Gatys to the match iteration k is N-iteration time * k / N (L-BFGS iterations differ in cost by
    their line-search evaluations, so this is an estimate), measured directly when k == N.
    """
    import jax

    from adain_jax import transfer
    from adain_jax.quality import gatys

    n = args.time_iterations or args.iterations
    rows = []
    for size in [int(s) for s in args.time_sizes.split(",") if s]:
        content, style = load_pairs([pair], size)
        adain_fn = jax.jit(transfer.stylize)
        _timed(adain_fn, weights, content, style)  # compile
        adain_s = float(np.median([_timed(adain_fn, weights, content, style) for _ in range(args.repeats)]))
        log(f"table 1: Gatys {n} iterations at {size} px (compiling, then one timed run)")
        compiled = gatys.gatys.lower(weights["encoder"], content, style, iterations=n, optimizer="lbfgs",
                                     init="noise", style_loss="meanstd", content_target="adain",
                                     record_curve=False).compile()
        gatys_n = _timed(compiled, weights["encoder"], content, style)
        rows.append({"size": size, "adain_s": adain_s, "iterations": n, "gatys_n_s": gatys_n,
                     "match_iteration": match_iteration,
                     "gatys_match_s": gatys_n * match_iteration / n if match_iteration else None})
    return rows


def table1_markdown(rows, note, device) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [f"Table 1: seconds for one pair on {device} ({os.cpu_count()} CPUs, load average {load:.1f} at the "
             f"end; compilation excluded). {note}", "",
             "| size | AdaIN | Gatys to AdaIN's style loss | ratio | Gatys, N iterations | N | ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["gatys_match_s"]
        match = f"{m:.3f} s ({r['match_iteration']} it.)" if m else "not reached"
        ratio_m = f"{m / r['adain_s']:.0f}x" if m else "-"
        lines.append(f"| {r['size']} px | {r['adain_s']:.4f} s | {match} | {ratio_m} | {r['gatys_n_s']:.3f} s | "
                     f"{r['iterations']} | {r['gatys_n_s'] / r['adain_s']:.0f}x |")
    lines += ["", "The match iteration is Figure 3's (its size, mean over its pairs); its time is the N-iteration "
                  "time scaled by k / N.",
              "Paper (Titan X, official weights): AdaIN 0.018 s / 0.065 s, Gatys et al. 14.17 s / 46.75 s "
              "at 256 / 512 px."]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    from adain_jax.io import images as image_io
    from adain_jax.io import sheets

    weights, description, is_random = load_weights(args.weights)
    note = RANDOM_NOTE if is_random else f"On {description}."
    device = f"{jax.devices()[0].platform.upper()} ({jax.devices()[0].device_kind})"
    pairs = pick_pairs(args.contents, args.styles, args.pairs)
    log(f"{len(pairs)} pairs, {description}, {device}")

    t0 = time.perf_counter()
    fig = figure3(args, weights, pairs)
    log(f"figure 3 done in {time.perf_counter() - t0:.0f} s")
    # Figure 3 and the grid are written before Table 1 runs, so a long timing run loses nothing.
    args.out.mkdir(parents=True, exist_ok=True)
    fig_md = figure3_table(fig, note)
    plot_figure3(fig, args.out / "figure3.png", note)
    (args.out / "figure3.md").write_text(fig_md + "\n")
    grid = sheets.contact_sheet(
        [[fig["content"][i], fig["style"][i], fig["adain"][i], fig["gatys"][i]] for i in range(len(pairs))],
        labels=["content", "style", "AdaIN", f"Gatys ({args.iterations} it.)"], cell=min(args.size, 256),
        header=("RANDOM WEIGHTS: says nothing about the official model" if is_random
                else f"AdaIN vs Gatys et al., {description}"),
        row_labels=[f"{c.stem} x {s.stem}" for c, s in pairs])
    image_io.save_image(args.out / "grid.jpg", grid)
    print(fig_md, flush=True)

    rows = table1(args, weights, pairs[0], fig["match_iteration"])
    tab_md = table1_markdown(rows, note, device)
    (args.out / "table1.md").write_text(tab_md + "\n")
    record = {"weights": description, "random_weights": is_random, "device": device, "size": args.size,
              "pairs": [[str(c), str(s)] for c, s in pairs], "iterations": args.iterations,
              "mean_curve": {k: v.tolist() for k, v in fig["mean_curve"].items()},
              "adain_mean": fig["adain_mean"], "match_iteration": fig["match_iteration"], "table1": rows}
    (args.out / "quality.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n" + tab_md)
    print(f"\nwrote {args.out}/figure3.png, figure3.md, table1.md, grid.jpg, quality.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
