"""Throughput of `style_augment` in a jitted step against a PyTorch loop doing the same, in one run.

    python -m benchmarks.augment_throughput [--size 224] [--batches 32,128] [--precisions float32,bfloat16]
                                            [--repeats 5] [--weights DIR] [--json PATH] [--quick]

Two tables, every figure timed next to what it is compared with (`benchmarks.run.interleaved`: one
warm-up call each, then rounds that rotate the order), so that load from other processes hits both
sides alike:

* ``augment``: images/s of ``style_augment(key, images, StyleBank, p=0.5, alpha=(0.5, 1.0))`` inside
  ``jax.jit`` (a new key every call), float32 and ``precision="bfloat16"``, against the same per-batch
  stylization written as a PyTorch user writes it with the port's networks (`benchmarks.torch_side`):
  under ``torch.no_grad`` draw a style, an alpha and a coin per sample, encode the batch, AdaIN with
  the bank's moments, blend by alpha, decode, clamp, keep the input where the coin says so; eager float32
  and bfloat16 autocast with channels_last (torch_side's ``eager`` and ``bf16`` modes). Same weights
  (the library's ``--weights`` laid out as the official files), same images, same thread count.
  p does not change the cost of either (the whole batch is stylized and a mask selects), so only
  p=0.5 is timed. Before the timings, one batch is stylized by both with the same draws and the
  images compared (max abs diff; float32 must agree within ``PARITY_BOUND``, else exit status 1).
* ``train step``: ms/step of a small Flax classifier's jitted train step (four strided convolutions,
  Adam) on the same batch, without and with ``style_augment`` in it, and the overhead ratio.

Ratios are the median of per-round ratios (each round's runs are adjacent in time). On a GPU (JAX's
default backend and ``torch.cuda``) the same rows run there. Prints the markdown tables and writes
JSON atomically (default ``benchmarks/results/augment-<time>.json``). Method: docs/augment.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np

from benchmarks import run

PRECISIONS = ("float32", "bfloat16")
TORCH_MODES = {"float32": "eager", "bfloat16": "bf16"}  # torch_side's mode of each precision
P, ALPHA = 0.5, (0.5, 1.0)  # style_augment's defaults
# float32 on both sides: the same arithmetic in another order. 1e-3 on [0, 1] images is far above that
# rounding and far below a different draw or a missing step (differences of 0.1 and more).
PARITY_BOUND = 1e-3
PARITY_KEY = 0


def parse_args(argv=None) -> argparse.Namespace:
    from adain_jax.cli import options  # JAX-free: parsing stays fast

    p = argparse.ArgumentParser(prog="python -m benchmarks.augment_throughput",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=options.positive, default=None, help="image side in pixels (default 224)")
    p.add_argument("--batches", default=None, help="comma-separated batch sizes (default 32,128)")
    p.add_argument("--precisions", default=",".join(PRECISIONS),
                   help="comma-separated subset of float32,bfloat16 (default both)")
    p.add_argument("--repeats", type=options.positive, default=None,
                   help="timed rounds after one warm-up call per side (default 5)")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both frameworks (default: every core this process may use); fewer pins "
                        "the process to the first N cores")
    options.add_weights_argument(p, use="the frozen model that stylizes; the PyTorch side gets the same tensors")
    p.add_argument("--json", type=pathlib.Path, default=None,
                   help="where to write the JSON (default benchmarks/results/augment-<time>.json)")
    p.add_argument("--quick", action="store_true", help="size 64, batch 4, 2 rounds: checks the machinery in "
                                                        "seconds, measures nothing")
    args = p.parse_args(argv)
    args.size = args.size or (64 if args.quick else 224)
    try:
        args.batches = [int(b) for b in (args.batches or ("4" if args.quick else "32,128")).split(",") if b.strip()]
    except ValueError:
        p.error(f"--batches takes comma-separated integers, got {args.batches!r}")
    if not args.batches or min(args.batches) < 1:
        p.error(f"--batches takes batch sizes >= 1, got {args.batches}")
    args.precisions = [s.strip() for s in args.precisions.split(",") if s.strip()]
    unknown = [s for s in args.precisions if s not in PRECISIONS]
    if unknown or not args.precisions:
        p.error(f"unknown --precisions {unknown}; choose from {','.join(PRECISIONS)}")
    args.repeats = args.repeats or (2 if args.quick else 5)
    return args


# --------------------------------------------------------------------------------------------------
# The two sides
# --------------------------------------------------------------------------------------------------


def torch_state_dicts(weights) -> tuple[dict, dict]:
    """The library's weights laid out as the official ``vgg_normalised.pth`` and ``decoder.pth`` (the
    inverse of `convert.torch_layout.weights_from_torch`), so the PyTorch side runs the same model."""
    from adain_jax.model import architecture, variants

    variants.require_plain(weights, "the PyTorch reference network (benchmarks.torch_side)")

    def layers(params, specs) -> dict:
        out = {}
        for spec in specs:
            out[f"{spec.torch_index}.weight"] = np.ascontiguousarray(
                np.asarray(params[spec.name]["kernel"], np.float32).transpose(3, 2, 0, 1))
            out[f"{spec.torch_index}.bias"] = np.array(params[spec.name]["bias"], np.float32)
        return out

    vgg = layers(weights["encoder"], architecture.ENCODER)
    # The port builds the whole VGG file and cuts it at relu4_1; the tail it drops only has to load.
    for spec in architecture.VGG_TAIL:
        vgg[f"{spec.torch_index}.weight"] = np.zeros(spec.torch_weight_shape, np.float32)
        vgg[f"{spec.torch_index}.bias"] = np.zeros(spec.out_channels, np.float32)
    return vgg, layers(weights["decoder"], architecture.DECODER)


def jax_draws(key, n: int, num_styles: int, p: float = P, alpha=ALPHA) -> dict:
    """The per-sample style, alpha and coin that ``style_augment(key, ...)`` draws from a bank of
    ``num_styles`` (its order of splits and draws), for the PyTorch loop to replay in the parity check.
    If style_augment changes how it draws, the check's difference says so."""
    import jax
    import jax.numpy as jnp

    k_coin, k_alpha, k_style = jax.random.split(key, 3)
    a = jax.random.uniform(k_alpha, (n,), jnp.float32, *alpha)
    chosen = (jax.random.uniform(k_coin, (n,)) < p) & (a != 0)
    idx = jax.random.randint(k_style, (n,), 0, num_styles)
    return {"style": np.array(idx), "alpha": np.array(a), "chosen": np.array(chosen)}  # writable, for torch


class TorchAugment:
    """The per-batch stylization as a PyTorch user writes it, on torch_side's networks in one mode."""

    def __init__(self, vgg_sd: dict, dec_sd: dict, precision: str, device: str, bank):
        import torch

        from benchmarks.torch_side import TorchSide

        self.torch = torch
        self.side = TorchSide(vgg_sd, dec_sd, TORCH_MODES[precision])
        self.precision, self.device = precision, device
        self.vgg, self.dec = self.side.vgg.to(device), self.side.dec.to(device)
        self.mean = torch.from_numpy(np.array(bank.mean, np.float32)).to(device)
        self.std = torch.from_numpy(np.array(bank.std, np.float32)).to(device)
        self.generator = torch.Generator(device).manual_seed(0)

    def inputs(self, images: np.ndarray):
        return self.side.inputs(images).to(self.device)

    def _autocast(self):
        if self.precision == "bfloat16":
            return self.torch.autocast(self.device, dtype=self.torch.bfloat16)
        return contextlib.nullcontext()

    def draws(self, n: int) -> dict:
        torch, g = self.torch, self.generator
        alpha = torch.empty(n, device=self.device).uniform_(*ALPHA, generator=g)
        chosen = (torch.rand(n, device=self.device, generator=g) < P) & (alpha != 0)
        style = torch.randint(0, self.mean.shape[0], (n,), device=self.device, generator=g)
        return {"style": style, "alpha": alpha, "chosen": chosen}

    def __call__(self, images, draws: dict | None = None):
        from benchmarks.torch_side import _adain_with_moments

        torch = self.torch
        d = draws or self.draws(images.shape[0])
        h, w = images.shape[2:]
        with torch.no_grad(), self._autocast():
            feat = self.vgg(images)
            style = d["style"]
            target = _adain_with_moments(feat, self.mean[style, :, None, None], self.std[style, :, None, None])
            a = d["alpha"].view(-1, 1, 1, 1)
            out = self.dec(a * target + (1 - a) * feat)[:, :, :h, :w].float().clamp_(0.0, 1.0)
        out = torch.where(d["chosen"].view(-1, 1, 1, 1), out, images)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return out


def jax_augment(precision: str):
    """``style_augment`` inside a jitted function, a new key per call (``step`` folded in)."""
    import functools

    import jax

    from adain_jax.augment import style_augment

    @functools.partial(jax.jit, static_argnames="precision")
    def augment(key, step, images, bank, adain, precision):
        return style_augment(jax.random.fold_in(key, step), images, bank, weights=adain, p=P, alpha=ALPHA,
                             precision=precision)

    return functools.partial(augment, precision=precision)


# --------------------------------------------------------------------------------------------------
# The train step
# --------------------------------------------------------------------------------------------------


def classifier():
    import flax.linen as nn

    class Classifier(nn.Module):
        """Four strided 3x3 convolutions, global average pooling, ten classes: a small backbone whose step
        costs far less than the stylization, so the overhead shown is close to style_augment's own."""

        @nn.compact
        def __call__(self, x):
            for features in (32, 64, 128, 256):
                x = nn.relu(nn.Conv(features, (3, 3), strides=2)(x))
            return nn.Dense(10)(x.mean(axis=(1, 2)))

    return Classifier()


def init_classifier(size: int):
    """The classifier's parameters, initialised once in one compiled program (op by op, Flax's init
    compiles dozens of small programs) and shared by every train step compared."""
    import jax
    import jax.numpy as jnp

    return jax.jit(classifier().init)(jax.random.key(0), jnp.zeros((1, size, size, 3)))["params"]


def train_step(params, augment_precision: str | None):
    """A callable (images, labels, adain, bank) -> loss running one jitted step on its own copy of
    ``params`` (donated, as a training loop does); ``augment_precision`` None: no style_augment in the step."""
    import jax
    import jax.numpy as jnp
    import optax

    from adain_jax.augment import style_augment

    model, tx = classifier(), optax.adam(1e-3)

    def step(params, opt_state, key, images, labels, adain, bank):
        if augment_precision is not None:
            images = style_augment(key, images, bank, weights=adain, p=P, alpha=ALPHA, precision=augment_precision)

        def loss_fn(params):
            logits = model.apply({"params": params}, images)
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    compiled = jax.jit(step, donate_argnums=(0, 1))
    params = jax.tree.map(jnp.copy, params)
    held = {"params": params, "opt_state": jax.jit(tx.init)(params), "step": 0}
    key = jax.random.key(1)

    def run_step(images, labels, adain, bank) -> float:
        held["params"], held["opt_state"], loss = compiled(held["params"], held["opt_state"],
                                                           jax.random.fold_in(key, held["step"]), images, labels,
                                                           adain, bank)
        held["step"] += 1
        return float(loss)  # waits for the step

    return run_step


# --------------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------------


def parity(batch: int, images: np.ndarray, adain, bank, torch_sides: dict, jax_fns: dict) -> dict:
    """Both sides stylize one batch with the draws of the timed JAX function (the same compiled program)
    for ``PARITY_KEY``: max abs diff per precision, and whether each side returned the unselected samples
    unchanged."""
    import jax
    import jax.numpy as jnp

    key = jax.random.key(PARITY_KEY)
    d = jax_draws(jax.random.fold_in(key, 0), batch, len(bank))
    x = jax.device_put(jnp.asarray(images))
    out = {"batch": batch, "stylized": int(d["chosen"].sum()), "bound_float32": PARITY_BOUND, "max_abs_diff": {},
           "unselected_unchanged": {}}
    for precision, side in torch_sides.items():
        j = np.asarray(jax_fns[precision](key, 0, x, bank, adain))
        draws = {k: side.torch.from_numpy(v.astype(np.int64) if k == "style" else v).to(side.device)
                 for k, v in d.items()}
        t = side.side.to_numpy(side(side.inputs(images), draws))
        keep = ~d["chosen"]
        out["max_abs_diff"][precision] = run.max_abs_diff(j, t)
        out["unselected_unchanged"][precision] = bool(np.array_equal(j[keep], images[keep])
                                                      and np.array_equal(t[keep], images[keep]))
    f32 = out["max_abs_diff"].get("float32")
    out["ok"] = (f32 is None or f32 <= PARITY_BOUND) and all(out["unselected_unchanged"].values())
    return out


def augment_row(batch: int, size: int, images: np.ndarray, adain, bank, torch_sides: dict, jax_fns: dict,
                repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from benchmarks.jax_side import NAMES

    x = jax.device_put(jnp.asarray(images))
    key, counter = jax.random.key(2), iter(range(1 << 30))
    fns, sides = {}, {}
    for precision, fn in jax_fns.items():
        sides[NAMES[precision]] = argparse.Namespace(precision=precision)
        fns[NAMES[precision]] = lambda fn=fn: fn(key, next(counter), x, bank, adain).block_until_ready()
    for side in torch_sides.values():
        t = side.inputs(images)
        sides[side.side.name] = side.side
        fns[side.side.name] = lambda side=side, t=t: side(t)
    row = {"bench": "augment", "size": size, "batch": batch, "repeats": repeats, "load_before": os.getloadavg()}
    res = run.interleaved(fns, repeats)
    row["load_after"] = os.getloadavg()
    for r in res.values():
        r.pop("first_output")
        r["images_per_s"] = batch / r["median_s"]
    row["results"] = res
    run.summarise(row, sides)
    return row


def train_row(batch: int, size: int, images: np.ndarray, adain, bank, precisions: list[str], repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    x = jax.device_put(jnp.asarray(images))
    labels = jax.device_put(jnp.arange(batch, dtype=jnp.int32) % 10)
    params, fns = init_classifier(size), {}
    for name, precision in (("without", None), *((f"with_{p}", p) for p in precisions)):
        step = train_step(params, precision)
        fns[name] = lambda step=step: step(x, labels, adain, bank)
    row = {"bench": "train_step", "size": size, "batch": batch, "repeats": repeats, "load_before": os.getloadavg()}
    res = run.interleaved(fns, repeats)
    row["load_after"] = os.getloadavg()
    row["first_loss"] = {name: r.pop("first_output") for name, r in res.items()}
    for r in res.values():
        r["images_per_s"] = batch / r["median_s"]
    base = res["without"]["times_s"]
    row["overhead"] = {name: statistics.median(a / b for a, b in zip(r["times_s"], base, strict=True))
                       for name, r in res.items() if name != "without"}
    row["results"] = res
    return row


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def _ms(t: float) -> str:
    return f"{t * 1e3:,.0f}" if t >= 0.1 else f"{t * 1e3:.1f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"# style_augment throughput ({report['started']})",
        "",
        f"- command: `{report['command']}`",
        (f"- machine: {m['cpu']} ({m['cores']} cores, {m['threads']} threads for both frameworks); load average "
         f"{m['load_start'][0]:.1f} at start, {m['load_end'][0]:.1f} at end"),
        (f"- devices: JAX {report['jax_backend']} ({m['jax_devices']}), PyTorch {report['torch_device']}; jax "
         f"{m['jax']}, flax {m['flax']}, torch {m['torch']}; adain-jax bfloat16 convolutions: {m['onednn']}"),
        (f"- model: {report['model']}; {report['size']}x{report['size']} float32 images, a bank of "
         f"{report['styles']} styles, p={P}, alpha {ALPHA}; {report['repeats']} timed rounds after one warm-up"),
        "",
        ("Images/s from the median of the timed runs, runs interleaved. Ratio = JAX time / PyTorch time in the same "
         "precision, median of the per-round ratios (< 1: style_augment faster). p does not change either side's "
         "cost (both stylize the whole batch and mask), so only p=0.5 is timed."),
        "",
        ("| batch | precision | PyTorch loop | JAX img/s | PyTorch img/s | JAX ms (min) | PyTorch ms (min) "
         "| ratio (paired) |"),
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if row["bench"] != "augment":
            continue
        for name, r in row["ratios"].items():
            j, t = row["results"][r["jax_side"]], row["results"][name]
            mode = "bf16 autocast, channels_last" if name == "bf16" else "eager, float32"
            lines.append(f"| {row['batch']} | {r['precision']} | {mode} | {j['images_per_s']:.2f} | "
                         f"{t['images_per_s']:.2f} | {_ms(j['median_s'])} ({_ms(j['min_s'])}) | "
                         f"{_ms(t['median_s'])} ({_ms(t['min_s'])}) | **{r['paired_median']:.2f}** |")
    par = report["parity"]
    diffs = ", ".join(f"{p} {d:.2e}" for p, d in par["max_abs_diff"].items())
    unchanged = "yes" if all(par["unselected_unchanged"].values()) else "NO"
    lines += [
        "",
        (f"Parity (batch {par['batch']}, {par['stylized']} of them stylized, the same draws on both sides): "
         f"max |JAX - PyTorch| {diffs} (float32 bound {par['bound_float32']:g}); unselected samples returned "
         f"unchanged: {unchanged}{'' if par['ok'] else ' -- PARITY FAILED'}."),
        "",
        ("Train step of a small Flax classifier (four strided 3x3 convolutions, Adam), jitted, without and with "
         "style_augment in it. Overhead = time with / time without, median of the per-round ratios."),
        "",
        "| batch | style_augment | ms/step (min) | images/s | added ms/step | overhead (paired) |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if row["bench"] != "train_step":
            continue
        base = row["results"]["without"]["median_s"]
        for name, r in row["results"].items():
            if name == "without":
                what, added, overhead = "none", "-", "baseline"
            else:
                what, added = name.removeprefix("with_"), _ms(r["median_s"] - base)
                overhead = f"**{row['overhead'][name]:.2f}x**"
            lines.append(f"| {row['batch']} | {what} | {_ms(r['median_s'])} ({_ms(r['min_s'])}) | "
                         f"{r['images_per_s']:.2f} | {added} | {overhead} |")
    return "\n".join(lines) + "\n"


def write_json(path: pathlib.Path, report: dict) -> None:
    from adain_jax.io import files

    text = json.dumps(report, indent=1, default=float).encode()
    files.write_atomically(path, lambda handle: handle.write(text), what="benchmark results")


# --------------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------------


def torch_device(threads: int) -> str:
    import torch

    torch.set_num_threads(threads)
    return "cuda" if torch.cuda.is_available() else "cpu"


def jax_backend() -> str:
    import jax

    return jax.default_backend()


def style_bank(adain, size: int):
    """The moments of the packaged style images at the benchmark's size (a few real styles), on the device."""
    import jax

    from adain_jax import examples
    from adain_jax.augment import StyleBank

    return jax.device_put(StyleBank.from_folder(adain, examples.directory() / "style", size=size))


def main(argv=None) -> int:
    args = parse_args(argv)
    from adain_jax import extras

    extras.exit_if_missing("bench", "python -m benchmarks.augment_throughput")
    from benchmarks import fixtures

    threads = fixtures.configure_threads(args.threads)
    import adain_jax  # noqa: F401  (first: appends its XLA flags before JAX's backend starts)
    from adain_jax.cli import options

    device = torch_device(threads)
    started = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    try:
        adain, model, _ = options.load_model(args.weights)
        vgg_sd, dec_sd = torch_state_dicts(adain)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    bank = style_bank(adain, args.size)
    torch_sides = {p: TorchAugment(vgg_sd, dec_sd, p, device, bank) for p in args.precisions}
    jax_fns = {p: jax_augment(p) for p in args.precisions}
    report = {"started": started, "command": "python -m benchmarks.augment_throughput " + " ".join(
                  argv if argv is not None else sys.argv[1:]),
              "args": {k: (str(v) if isinstance(v, pathlib.Path) else v) for k, v in vars(args).items()},
              "machine": run.machine_info(threads), "jax_backend": jax_backend(), "torch_device": device,
              "model": model, "size": args.size, "styles": len(bank), "p": P, "alpha": ALPHA, "repeats": args.repeats}
    t_start = time.perf_counter()

    rows = []
    for i, batch in enumerate(args.batches):
        images = fixtures.images(10 + i, batch, args.size)
        if i == 0:
            report["parity"] = parity(batch, images, adain, bank, torch_sides, jax_fns)
            run.log(f"parity: max abs diff {report['parity']['max_abs_diff']}, ok={report['parity']['ok']}")
        run.log(f"augment: batch {batch} at {args.size}x{args.size} ...")
        rows.append(augment_row(batch, args.size, images, adain, bank, torch_sides, jax_fns, args.repeats))
        run.log("  " + run.format_row_brief(rows[-1]))
        run.log(f"train step: batch {batch}, without and with style_augment ...")
        rows.append(train_row(batch, args.size, images, adain, bank, args.precisions, args.repeats))
        run.log("  overhead " + ", ".join(f"{k} {v:.2f}x" for k, v in rows[-1]["overhead"].items()))
    report["rows"] = rows
    report["machine"]["load_end"] = os.getloadavg()
    report["wall_s"] = time.perf_counter() - t_start

    print(markdown(report))
    path = args.json or run.RESULTS / ("augment-" + datetime.datetime.now().strftime("%Y%m%d-%H%M%S") + ".json")
    write_json(path, report)
    run.log(f"wrote {path} ({report['wall_s'] / 60:.1f} min)")
    if not report["parity"]["ok"]:
        print(f"error: the two sides do not compute the same images (parity {report['parity']['max_abs_diff']})",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
