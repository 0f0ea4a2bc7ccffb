"""The StyleGAN ablation (Karras et al. 2019, Table 1) at toy scale: ``python -m train.ablation --workdir W``.

Trains one generator per row of the paper's table that applies without progressive growing, all
with the same config, budget (``config.num_steps``) and seed, into ``W/<row>/`` (a normal
`train.gan` workdir: resumable; a finished row is never trained again), then measures each row's
EMA generator and writes ``W/ablation.md``: a Fréchet distance between ``config.fd_samples``
generated images (untruncated, fixed latents and noise) and the whole dataset, in the penultimate-layer
features of a small CNN classifier trained once on the same dataset (`train.fd_classifier`, cached in
``W/classifier/``, its held-out accuracy reported). It is named "FD-<data> (classifier features)":
not FID, on another scale, comparable only within one table. The paper's FIDs are shown beside it,
and a sample grid per row (``W/<row>/grid.png``, the same latents in every row).

Rows (each adds one change to the one above):

* ``A`` the progressive GAN baseline (nearest-neighbour resampling): not reproduced, since
  `adain_jax.stylegan` has no progressive growing and always resamples bilinearly;
* ``B`` the tuned baseline, as far as it applies: bilinear up/down-sampling, traditional input
  (``const_input=False``), no mapping network and no styles (``use_mapping=use_styles=False``: pixel
  norm after every conv, as the progressive GAN), no noise, no mixing;
* ``C`` + mapping network and styles (``use_mapping=use_styles=True``);
* ``D`` + learned constant input instead of the traditional input (``const_input=True``);
* ``E`` + noise inputs (``use_noise=True``);
* ``F`` + mixing regularisation (``mixing_prob=0.9``): the full StyleGAN.

Flags: ``--workdir``, ``--config`` (default train/configs/stylegan_digits.py, any key overridable:
``--config.num_steps=1000``), ``--rows=B,C`` to train/measure a subset (the table lists the rows found).
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import time

import adain_jax  # noqa: F401  first: sets the fast XLA:CPU flags before anything starts JAX's backend
from adain_jax import extras

extras.exit_if_missing("train", "python -m train.ablation")  # one line, not a traceback, without the train extra
from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags, defined only when it runs, so this module imports beside `train.main` (whose
    ``--workdir`` and ``--config`` are defined at import)."""
    flags.DEFINE_string("workdir", None, "Directory of the ablation: one workdir per row, the classifier, ablation.md.")
    flags.DEFINE_string("rows", "", "Comma-separated rows to run (default: all of B,C,D,E,F).")
    config_flags.DEFINE_config_file(
        "config", str(pathlib.Path(__file__).parent / "configs" / "stylegan_digits.py"),
        "Base StyleGAN configuration (train/configs/stylegan_*.py); every row starts from it.", lock_config=True)
    flags.mark_flags_as_required(["workdir"])

REPORT = "ablation.md"
CLASSIFIER_DIR = "classifier"
FD_SEED = 20190  # latents and noise of the measured samples: the same for every row
FD_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    change: str
    switches: dict
    paper_fid: tuple[str, str]  # CelebA-HQ, FFHQ (Karras et al. 2019, Table 1)


_OFF = dict(use_mapping=False, use_styles=False, const_input=False, use_noise=False, mixing_prob=0.0)
ROWS = (
    Row("B", "baseline: traditional input, no mapping/styles, no noise (bilinear resampling)", _OFF,
        ("6.11", "5.25")),
    Row("C", "+ mapping network and styles", {**_OFF, "use_mapping": True, "use_styles": True}, ("5.34", "4.85")),
    Row("D", "+ learned constant input (no traditional input)",
        {**_OFF, "use_mapping": True, "use_styles": True, "const_input": True}, ("5.07", "4.88")),
    Row("E", "+ noise inputs", {**_OFF, "use_mapping": True, "use_styles": True, "const_input": True,
                                "use_noise": True}, ("5.06", "4.42")),
    Row("F", "+ mixing regularisation (0.9)", {"use_mapping": True, "use_styles": True, "const_input": True,
                                               "use_noise": True, "mixing_prob": 0.9}, ("5.17", "4.40")),
)
PAPER_A = ("A", "progressive GAN baseline (nearest-neighbour resampling): not reproduced", ("7.79", "8.04"))


def row_config(config, row: Row):
    """The base config with the row's switches (everything else, budget and seed included, unchanged)."""
    config = config.copy_and_resolve_references()
    for key, value in row.switches.items():
        config[key] = value
    return config


def select_rows(spec: str) -> tuple[Row, ...]:
    from train.errors import SetupError

    if not spec.strip():
        return ROWS
    names = [n.strip().upper() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in {r.name for r in ROWS}]
    if unknown:
        raise SetupError(f"--rows: unknown row(s) {', '.join(unknown)} (rows: {', '.join(r.name for r in ROWS)})")
    return tuple(r for r in ROWS if r.name in names)


def train_rows(config, workdir: pathlib.Path, rows) -> dict[str, float]:
    """Train every row to ``config.num_steps`` (skipping finished ones); seconds spent per row."""
    from adain_jax import stylegan as sg
    from train import gan

    spent = {}
    for row in rows:
        directory = workdir / row.name
        steps = sg.generator_steps(directory)
        if steps and steps[-1] >= config.num_steps:
            logging.info("Row %s: already trained to step %d, not training again", row.name, steps[-1])
            continue
        logging.info("Row %s (%s): training to step %d in %s", row.name, row.change, config.num_steps, directory)
        t0 = time.time()
        gan.train_and_evaluate(row_config(config, row), directory)
        spent[row.name] = time.time() - t0
    return spent


def generated_images(directory: pathlib.Path, count: int):
    """``count`` untruncated samples of the row's EMA generator, float32 in [-1, 1], fixed latents and noise."""
    import jax
    import numpy as np

    from adain_jax import stylegan as sg

    ema, gcfg, w_avg = sg.load_generator(directory)
    z = np.random.default_rng(FD_SEED).standard_normal((count, gcfg.latent_dim)).astype(np.float32)
    chunks = []
    for start in range(0, count, FD_CHUNK):
        part = z[start:start + FD_CHUNK]
        padded = np.concatenate([part, np.zeros((FD_CHUNK - len(part), part.shape[1]), np.float32)])
        key = jax.random.fold_in(jax.random.key(FD_SEED), start)
        chunks.append(np.asarray(sg.generate(ema, gcfg, padded, key))[:len(part)])
    return np.clip(np.concatenate(chunks), -1.0, 1.0), (ema, gcfg, w_avg)


def measure(config, workdir: pathlib.Path, rows) -> dict:
    """The classifier (trained or cached), the real-data reference, and per row its FD and sample grid."""
    import numpy as np

    from adain_jax import stylegan as sg
    from adain_jax.quality import frechet
    from train import fd_classifier, gan, gan_samples

    stream = gan.create_input(config)
    images, labels = fd_classifier.labelled_images(stream, config.channels)
    params, info = fd_classifier.load_or_train(
        workdir / CLASSIFIER_DIR, images, labels, fingerprint=stream.source.fingerprint,
        seed=config.fd_classifier_seed, steps=config.fd_classifier_steps)
    real = fd_classifier.features(params, images)
    half = len(real) // 2
    order = np.random.default_rng(FD_SEED).permutation(len(real))
    results = {"classifier": info, "data": stream.source.spec, "real_images": int(len(real)),
               "feature_dim": int(real.shape[1]),
               "fd_samples": int(config.fd_samples),
               "fd_real_halves": frechet.frechet_distance_of(real[order[:half]], real[order[half:]]), "rows": {}}
    for row in rows:
        directory = workdir / row.name
        steps = sg.generator_steps(directory)
        if not steps:
            continue
        fake, (ema, gcfg, w_avg) = generated_images(directory, int(config.fd_samples))
        grid = gan_samples.SampleGrid(gcfg, count=config.num_samples, cell=config.sample_size)
        grid_path = directory / "grid.png"
        grid.write(ema, w_avg, grid_path, header=f"row {row.name}, step {steps[-1]}")
        results["rows"][row.name] = {"fd": frechet.frechet_distance_of(real, fd_classifier.features(params, fake)),
                                     "step": steps[-1], "grid": str(grid_path.relative_to(workdir))}
    return results


def write_report(workdir: pathlib.Path, config, results: dict, spent: dict[str, float]) -> pathlib.Path:
    data = results["data"]
    name = f"FD-{data.split(':')[-1]}"
    lines = [
        f"# StyleGAN ablation at toy scale ({data}, {config.resolution}x{config.resolution})",
        "",
        f"{name} (classifier features), not FID: the Fréchet distance between {results['fd_samples']} generated "
        f"images (EMA generator, no truncation) and all {results['real_images']} dataset images, in the "
        f"{results['feature_dim']}-d penultimate-layer features of a small CNN "
        f"classifier trained on the same dataset (held-out accuracy "
        f"{results['classifier']['heldout_accuracy']:.2%} on {results['classifier']['heldout_images']} images). "
        "Lower is better; the scale is not FID's and only rows of this table compare. The paper's FIDs "
        "(Inception features, 1024x1024 faces) are for reference.",
        "",
        f"Every row: the same config, {config.num_steps} steps of batch {config.batch_size}, seed {config.seed}. "
        f"Two halves of the real data are {results['fd_real_halves']:.2f} apart (the floor this sample size "
        "allows).",
        "",
        f"| row | configuration | {name} (classifier features) | paper FID CelebA-HQ | paper FID FFHQ | steps | samples |",
        "| --- | --- | ---: | ---: | ---: | ---: | --- |",
        f"| {PAPER_A[0]} | {PAPER_A[1]} | - | {PAPER_A[2][0]} | {PAPER_A[2][1]} | - | - |",
    ]
    for row in ROWS:
        r = results["rows"].get(row.name)
        fd, step, grid = (f"{r['fd']:.2f}", r["step"], f"[grid]({r['grid']})") if r else ("not run", "-", "-")
        lines.append(f"| {row.name} | {row.change} | {fd} | {row.paper_fid[0]} | {row.paper_fid[1]} | {step} | {grid} |")
    lines += ["", "Switches per row (on top of the base config):", ""]
    lines += [f"- {row.name}: " + ", ".join(f"`{k}={v}`" for k, v in row.switches.items()) for row in ROWS]
    if spent:
        lines += ["", "Training time this invocation: " + ", ".join(f"{k} {v / 60:.1f} min" for k, v in spent.items())]
    path = workdir / REPORT
    tmp = path.with_name(f".{REPORT}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    (workdir / "ablation.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return path


def run(config, workdir, rows_spec: str = "") -> pathlib.Path:
    """Train the rows, measure them, write the report; returns its path."""
    from train.errors import SetupError

    workdir = pathlib.Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    if config.get("model", "stylegan") != "stylegan":
        raise SetupError("train.ablation needs a StyleGAN config (config.model = 'stylegan')")
    rows = select_rows(rows_spec)
    spent = train_rows(config, workdir, rows)
    path = write_report(workdir, config, measure(config, workdir, rows), spent)
    logging.info("Wrote %s", path)
    return path


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"Too many command-line arguments: {' '.join(argv[1:])}")
    from train.errors import SetupError

    try:
        path = run(FLAGS.config, FLAGS.workdir, FLAGS.rows)
    except SetupError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(path.read_text())


if __name__ == "__main__":
    define_flags()
    app.run(main)
