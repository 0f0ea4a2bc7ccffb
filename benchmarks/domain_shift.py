"""Domain shift: does style augmentation help a small CNN on domains it never saw? No download.

    python -m benchmarks.domain_shift [--seeds 3] [--steps 300] [--out outputs/domain_shift] [--quick]

scikit-learn's digits (1,797 8x8 images, bundled with it), upscaled to 32x32 and rendered into four
domains: ``mono`` (white on black) and ``colour`` (a random colour on another) to train on; ``photo``
(MNIST-M style: the digit inverts a crop of the packaged content photos) and ``noise`` (the same on
procedural colour noise and stripes) held out. The same small CNN is trained by ERM, with MixStyle,
DSU or EFDMix after its first two blocks (`adain_jax.model.feature_stats`, the papers' defaults), and
with `adain_jax.augment.style_augment` in its jitted step (the packaged model, stylizing at 16x16 and
resizing back, `--resolution`; a bank of 64x64 crops of the packaged *style* images: no texture of a
test domain is seen in training). The CNN standardises each input image; Adam, batch 32. Each method runs for
several seeds; the markdown table gives the mean and spread (sample std) of the accuracy per domain,
and a bar chart is written beside ``results.json``. ``--quick`` checks the machinery in seconds (a
handful of steps), not the methods.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
METHODS = ("erm", "mixstyle", "dsu", "efdmix", "adain")
TRAIN_DOMAINS = ("mono", "colour")
TEST_DOMAINS = ("photo", "noise")
SIZE = 32


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.domain_shift", description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, default=3, help="training runs per method (default 3)")
    p.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    p.add_argument("--batch-size", type=int, default=32, help="training batch (default 32)")
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate (default 3e-3)")
    p.add_argument("--p", type=float, default=0.5, help="style_augment's probability per sample (default 0.5)")
    p.add_argument("--resolution", type=int, default=16,
                   help="style_augment stylizes at this size and resizes back (default 16: the digits are 8x8 "
                        "upscaled, so nothing of them is lost, for a quarter of the cost; 0: at 32)")
    p.add_argument("--out", type=pathlib.Path, default=ROOT / "outputs" / "domain_shift",
                   help="folder for results.json and domain_shift.png")
    p.add_argument("--quick", action="store_true", help="a few steps on a few images: checks the machinery only")
    args = p.parse_args(argv)
    args.methods = [m for m in args.methods.split(",") if m]
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"unknown --methods {unknown}; choose from {', '.join(METHODS)}")
    if args.quick:
        args.seeds, args.steps, args.batch_size = 1, 3, 8
    return args


# ------------------------------------------------------------------ data


def digits(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(1797, 32, 32) digit masks in [0, 1] (bilinear from 8x8) and their labels, shuffled."""
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    masks = np.stack([np.asarray(Image.fromarray((img / 16.0 * 255).astype(np.uint8)).resize((SIZE, SIZE),
                                                                                           Image.BILINEAR))
                      for img in data.images]).astype(np.float32) / 255.0
    order = rng.permutation(len(masks))
    return masks[order], data.target[order].astype(np.int32)


def crops(folder: pathlib.Path, n: int, size: int, rng: np.random.Generator, scale: int = 128) -> np.ndarray:
    """``n`` random size x size crops of the images in ``folder``, each resized to ``scale`` first."""
    from adain_jax.io import images as image_io

    pictures = [image_io.load_image(p, scale) for p in image_io.list_images(folder)]
    out = []
    for i in range(n):
        pic = pictures[i % len(pictures)]
        y, x = rng.integers(0, pic.shape[0] - size + 1), rng.integers(0, pic.shape[1] - size + 1)
        out.append(pic[y:y + size, x:x + size])
    return np.stack(out)


def procedural(n: int, rng: np.random.Generator) -> np.ndarray:
    """Smooth colour noise plus coloured stripes of random frequency and angle: (n, 32, 32, 3)."""
    from PIL import Image

    noise = np.stack([np.asarray(Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize(
        (SIZE, SIZE), Image.BICUBIC)) for _ in range(n)]).astype(np.float32) / 255.0
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    angle, freq = rng.uniform(0, np.pi, (n, 1, 1)), rng.uniform(0.2, 0.8, (n, 1, 1))
    stripes = 0.5 + 0.5 * np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy))
    colour = rng.random((n, 1, 1, 3)).astype(np.float32)
    return np.clip(0.6 * noise + 0.4 * stripes[..., None] * colour, 0.0, 1.0)


def render(domain: str, masks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Digit masks (n, 32, 32) -> RGB images of ``domain`` in [0, 1]."""
    n, m = len(masks), masks[..., None]
    if domain == "mono":
        return np.repeat(m, 3, axis=-1)
    if domain == "colour":
        # Either polarity, with at least 0.3 of brightness between digit and background, so it stays legible.
        bg = rng.random((n, 1, 1, 3))
        shift = rng.uniform(0.3, 0.7, (n, 1, 1, 1)) * np.where(bg.mean(-1, keepdims=True) > 0.5, -1, 1)
        fg = np.clip(bg + shift + rng.uniform(-0.2, 0.2, (n, 1, 1, 3)), 0.0, 1.0)
        return (bg * (1 - m) + fg * m).astype(np.float32)
    if domain == "photo":
        background = crops(ROOT / "adain_jax" / "examples" / "content", n, SIZE, rng)
    elif domain == "noise":
        background = procedural(n, rng)
    else:
        raise ValueError(f"unknown domain {domain!r}")
    return np.abs(background - m).astype(np.float32)  # MNIST-M's blend: the digit inverts the background


def make_data(seed: int, quick: bool) -> dict:
    rng = np.random.default_rng(seed)
    masks, labels = digits(rng)
    if quick:
        masks, labels = masks[:96], labels[:96]
    half = len(masks) * 2 // 3
    train_masks, train_labels = masks[:half], labels[:half]
    which = rng.integers(0, len(TRAIN_DOMAINS), half)
    train = np.empty((half, SIZE, SIZE, 3), np.float32)
    for d, name in enumerate(TRAIN_DOMAINS):
        train[which == d] = render(name, train_masks[which == d], rng)
    test = {name: (render(name, masks[half:], rng), labels[half:]) for name in ("mono", "colour", *TEST_DOMAINS)}
    return {"train": (train, train_labels), "test": test}


# ------------------------------------------------------------------ model and training


def make_model(method: str):
    import flax.linen as nn

    from adain_jax.model import feature_stats

    layers = {"mixstyle": feature_stats.MixStyle, "dsu": feature_stats.DSU, "efdmix": feature_stats.EFDMix}

    class CNN(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            # Each image standardised (the usual input normalisation, per image since domains differ).
            x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / (x.std(axis=(1, 2, 3), keepdims=True) + 1e-3)
            for features in (32, 64):  # the papers insert their layers after the early blocks
                x = nn.max_pool(nn.relu(nn.Conv(features, (3, 3))(x)), (2, 2), (2, 2))
                if method in layers:
                    x = layers[method]()(x, train=train)
            x = nn.relu(nn.Conv(128, (3, 3))(x))
            return nn.Dense(10)(x.mean(axis=(1, 2)))

    return CNN()


def style_bank(adain, seed: int, quick: bool):
    """Moments of 64x64 crops of the packaged style images (never a test domain's textures)."""
    from adain_jax.augment import StyleBank

    rng = np.random.default_rng(seed)
    pictures = crops(ROOT / "adain_jax" / "examples" / "style", 8 if quick else 32, 64, rng, scale=256)
    return StyleBank.from_images(adain, pictures, batch_size=8)


def train_and_evaluate(method: str, seed: int, data: dict, args: argparse.Namespace, adain, bank) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from adain_jax.augment import style_augment

    model = make_model(method)
    train_x, train_y = data["train"]
    params = model.init(jax.random.key(seed), jnp.zeros((1, SIZE, SIZE, 3)), train=False)["params"]
    tx = optax.adam(args.lr)
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, images, labels, key, adain, bank):
        k_style, k_layers = jax.random.split(key)
        if method == "adain":
            images = style_augment(k_style, images, bank, weights=adain, p=args.p, resolution=args.resolution or None)

        def loss_fn(params):
            logits = model.apply({"params": params}, images, train=True, rngs={"augment": k_layers})
            return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    predict = jax.jit(lambda params, x: jnp.argmax(model.apply({"params": params}, x, train=False), -1))
    rng = np.random.default_rng(seed + 1)
    key = jax.random.key(seed + 2)
    start = time.perf_counter()
    for i in range(args.steps):
        idx = rng.integers(0, len(train_x), args.batch_size)
        params, opt_state, loss = step(params, opt_state, train_x[idx], train_y[idx], jax.random.fold_in(key, i),
                                       adain, bank)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - start
    accuracy = {}
    for name, (x, y) in data["test"].items():
        pred = np.concatenate([np.asarray(predict(params, x[i:i + 256])) for i in range(0, len(x), 256)])
        accuracy[name] = float(np.mean(pred == y))
    return {"method": method, "seed": seed, "accuracy": accuracy, "final_loss": float(loss), "train_s": seconds}


# ------------------------------------------------------------------ report


def summarise(runs: list[dict], methods: list[str]) -> dict:
    """Per method and domain: mean and sample std over seeds; ``held-out`` is the test domains' mean."""
    table = {}
    for method in methods:
        rows = [r for r in runs if r["method"] == method]
        per = {d: [r["accuracy"][d] for r in rows] for d in ("mono", "colour", *TEST_DOMAINS)}
        per["held-out"] = [float(np.mean([r["accuracy"][d] for d in TEST_DOMAINS])) for r in rows]
        table[method] = {d: (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
                         for d, v in per.items()}
    return table


def markdown(table: dict, seeds: int) -> str:
    columns = ["mono", "colour", *TEST_DOMAINS, "held-out"]
    lines = [f"| method ({seeds} seed{'s' if seeds > 1 else ''}) | " + " | ".join(columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    for method, row in table.items():
        lines.append(f"| {method} | " + " | ".join(f"{row[c][0]:.3f} ± {row[c][1]:.3f}" for c in columns) + " |")
    return "\n".join(lines)


def plot(table: dict, path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = ["mono", "colour", *TEST_DOMAINS, "held-out"]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    width = 0.8 / len(table)
    for k, (method, row) in enumerate(table.items()):
        xs = np.arange(len(columns)) + (k - (len(table) - 1) / 2) * width
        ax.bar(xs, [row[c][0] for c in columns], width, yerr=[row[c][1] for c in columns], label=method, capsize=2)
    ax.set_xticks(np.arange(len(columns)), [f"{c}\n(train)" if c in TRAIN_DOMAINS else c for c in columns])
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1)
    ax.legend(ncol=len(table), fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    args = parse_args(argv)
    from adain_jax import extras

    extras.exit_if_missing("train", "python -m benchmarks.domain_shift")  # scikit-learn's digits, matplotlib
    import adain_jax
    from adain_jax import pretrained

    adain = adain_jax.load_weights(pretrained.DIRECTORY if pretrained.available() else "random")
    bank = style_bank(adain, 0, args.quick) if "adain" in args.methods else None
    runs = []
    for seed in range(args.seeds):
        data = make_data(seed, args.quick)
        for method in args.methods:
            run = train_and_evaluate(method, seed, data, args, adain, bank)
            runs.append(run)
            print(f"seed {seed} {method:8s} held-out "
                  f"{np.mean([run['accuracy'][d] for d in TEST_DOMAINS]):.3f} ({run['train_s']:.1f} s)",
                  file=sys.stderr, flush=True)
    table = summarise(runs, args.methods)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                       "runs": runs, "table": table}, indent=1))
    plot(table, args.out / "domain_shift.png")
    print(markdown(table, args.seeds))
    print(f"\nwrote {args.out / 'results.json'} and {args.out / 'domain_shift.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
