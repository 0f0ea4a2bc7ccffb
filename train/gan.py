"""Training of the style-based generator (`adain_jax.stylegan`): the GAN state, the jitted steps, the run.

`train_and_evaluate(config, workdir)` is the whole run, in the same pieces as the decoder's
(`train.train`): mesh, input (`create_input`), state (`create_gan_state`), restore, steps
(`compile_gan_steps`) and the shared loop (`train.loop.TrainLoop`) with its checkpoints
(`train.checkpointing` with `GAN_ITEMS`), metrics, progress bar, sample grids and stop on a signal.

`gan_step(state, batch)` is the pure function it jits, StyleGAN's alternation (Karras et al. 2019):

* D: non-saturating logistic loss on the batch's reals and on fakes of fresh latents; R1 on the reals
  (``gamma / 2 * ||grad D(x)||^2``) every ``r1_every``-th step, scaled by ``r1_every`` (lazy
  regularisation, StyleGAN2's, so the penalty's weight does not depend on the interval). The R1 and
  plain steps are two programs compiled once each (`AlternatingStep` picks one per step on the host),
  so the interval never recompiles;
* G: non-saturating loss ``softplus(-D(G(z)))`` against the updated D, on other fresh latents;
* the EMA of G's parameters (what sampling uses) and the tracked mean of w (truncation's centre).

Mixing regularisation: with probability ``mixing_prob`` a batch takes the layers from a crossover
point on (drawn uniformly in ``[1, L)``) from a second latent, as the NVlabs code does (one crossover
per batch). Both are traced values through `adain_jax.stylegan.mix`'s mask, so no crossover compiles a
program of its own. Latents, the mixing draw and the noise are pure functions of ``(seed, step)``
(`jax.random.fold_in`), the data of ``(seed, sample index)`` (`train.input_pipeline`), so a resumed
run repeats an uninterrupted one exactly. Adam with StyleGAN's betas (0, 0.99) for both networks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import os
import pathlib
import time
from typing import Any, Callable

import absl.logging as logging
import flax.struct
import jax
import jax.numpy as jnp
import optax

from adain_jax import parallel
from adain_jax import stylegan as sg
from adain_jax.io.weights import TRAIN_STATE_ITEM
from train import checkpointing, data_sources, input_pipeline, loop
from train import train as decoder_training
from train.errors import SetupError

GENERATOR_ITEM = "generator"  # {"ema": EMA generator params, "w_avg": tracked mean w}: what sampling needs
IMAGES = "images"  # the batch key
DATA_STREAM = 0  # salt of the data stream's RNG


@flax.struct.dataclass
class GANState:
    step: jax.Array  # int32 scalar: steps done (one D and one G update each)
    g_params: Any
    d_params: Any
    g_ema: Any  # exponential moving average of g_params: what samples and `adain-jax generate` use
    w_avg: jax.Array  # (latent_dim,) tracked mean of w: the centre of truncation
    g_opt: Any
    d_opt: Any


def _gan_items(state: GANState) -> dict[str, Any]:
    return {GENERATOR_ITEM: {"ema": state.g_ema, "w_avg": state.w_avg},
            TRAIN_STATE_ITEM: {"step": state.step, "g_params": state.g_params, "d_params": state.d_params,
                               "g_opt": state.g_opt, "d_opt": state.d_opt}}


def _gan_from_items(like: GANState, items: dict[str, Any]) -> GANState:
    gen, ts = items[GENERATOR_ITEM], items[TRAIN_STATE_ITEM]
    return like.replace(step=ts["step"], g_params=ts["g_params"], d_params=ts["d_params"], g_ema=gen["ema"],
                        w_avg=gen["w_avg"], g_opt=ts["g_opt"], d_opt=ts["d_opt"])


# WORKDIR/checkpoints/<step>/{generator, train_state, meta}; meta["generator_config"] is the GeneratorConfig.
GAN_ITEMS = checkpointing.ItemAdapter(_gan_items, _gan_from_items, GENERATOR_ITEM)


# --------------------------------------------------------------------------------------------------
# Configuration, optimiser, initialisation.
# --------------------------------------------------------------------------------------------------


def generator_config(config) -> sg.GeneratorConfig:
    return sg.GeneratorConfig(
        resolution=config.resolution, channels=config.channels, latent_dim=config.latent_dim,
        max_features=config.max_features, min_features=config.min_features, mapping_layers=config.mapping_layers,
        mapping_lr_mul=config.mapping_lr_mul, use_mapping=config.use_mapping, use_styles=config.use_styles,
        const_input=config.const_input, use_noise=config.use_noise)


def discriminator_config(config) -> sg.DiscriminatorConfig:
    return sg.DiscriminatorConfig(resolution=config.resolution, channels=config.channels,
                                  max_features=config.d_max_features, min_features=config.d_min_features,
                                  mbstd_group=config.mbstd_group)


def make_optimizer(lr: float, config) -> optax.GradientTransformation:
    """Adam with StyleGAN's betas (``config.adam_b1`` 0, ``adam_b2`` 0.99) and eps 1e-8."""
    return optax.adam(lr, b1=config.adam_b1, b2=config.adam_b2, eps=1e-8)


def create_gan_state(config, g_tx, d_tx) -> GANState:
    """Step 0: both networks from the library's numpy-seeded initialisation (same values on every host)."""
    gcfg, dcfg = generator_config(config), discriminator_config(config)
    f32 = functools.partial(jax.tree.map, lambda x: jnp.asarray(x, jnp.float32))
    g = f32(sg.init_generator(gcfg, config.seed))
    d = f32(sg.init_discriminator(dcfg, config.seed + 1))
    return GANState(step=jnp.zeros((), jnp.int32), g_params=g, d_params=d, g_ema=jax.tree.map(jnp.copy, g),
                    w_avg=jnp.zeros((gcfg.latent_dim,), jnp.float32), g_opt=g_tx.init(g), d_opt=d_tx.init(d))


# --------------------------------------------------------------------------------------------------
# The step.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepSettings:
    """Everything static about a step (hashable): the networks, the objective, the averages."""

    gcfg: sg.GeneratorConfig
    dcfg: sg.DiscriminatorConfig
    seed: int
    mixing_prob: float
    r1_gamma: float
    r1_every: int
    ema_decay: float
    w_avg_decay: float

    @classmethod
    def from_config(cls, config) -> "StepSettings":
        return cls(generator_config(config), discriminator_config(config), int(config.seed),
                   float(config.mixing_prob), float(config.r1_gamma), int(config.r1_every),
                   float(config.ema_decay), float(config.w_avg_decay))


def to_model_images(images: jax.Array, channels: int) -> jax.Array:
    """uint8 RGB NHWC batch -> float32 in [-1, 1] with ``channels`` channels (1: the mean of R, G, B)."""
    x = images.astype(jnp.float32)
    if channels == 1:
        x = jnp.mean(x, axis=-1, keepdims=True)  # exact for grey images, whose three channels are equal
    elif channels != x.shape[-1]:
        raise ValueError(f"cannot make {channels}-channel images from {x.shape[-1]} channels")
    return x / 127.5 - 1.0


def mixing_crossover(key, mixing_prob: float, num_layers: int) -> jax.Array:
    """A traced int: ``num_layers`` (no mixing) or, with probability ``mixing_prob``, uniform in [1, L)."""
    k_use, k_point = jax.random.split(key)
    point = jax.random.randint(k_point, (), 1, num_layers)
    return jnp.where(jax.random.uniform(k_use) < mixing_prob, point, num_layers)


def fakes(g_params, s: StepSettings, key, n: int) -> tuple[jax.Array, jax.Array]:
    """``n`` generated images of fresh latents (mixed with probability ``mixing_prob``), and their w."""
    k_z, k_z2, k_mix, k_noise = jax.random.split(key, 4)
    w = sg.mapping(g_params, s.gcfg, jax.random.normal(k_z, (n, s.gcfg.latent_dim)))
    ws = sg.broadcast_w(w, s.gcfg)
    if s.mixing_prob > 0:
        w2 = sg.mapping(g_params, s.gcfg, jax.random.normal(k_z2, (n, s.gcfg.latent_dim)))
        crossover = mixing_crossover(k_mix, s.mixing_prob, sg.num_style_layers(s.gcfg))
        ws = sg.mix(ws, sg.broadcast_w(w2, s.gcfg), crossover)
    return sg.synthesis(g_params, s.gcfg, ws, k_noise), w


def gan_step(state: GANState, batch: dict[str, jax.Array], *, s: StepSettings, g_tx, d_tx, lr: float,
             r1: bool) -> tuple[GANState, dict[str, jax.Array]]:
    """One D update (with R1 if ``r1``), one G update, the EMA and w_avg updates."""
    reals = to_model_images(batch[IMAGES], s.gcfg.channels)
    n = reals.shape[0]
    key = jax.random.fold_in(jax.random.key(s.seed), state.step)
    k_d, k_g = jax.random.split(key)

    fake_d, _ = fakes(state.g_params, s, k_d, n)
    fake_d = jax.lax.stop_gradient(fake_d)

    def d_loss_fn(d_params):
        real_logits = sg.discriminator(d_params, s.dcfg, reals)
        fake_logits = sg.discriminator(d_params, s.dcfg, fake_d)
        loss = sg.discriminator_loss(real_logits, fake_logits)
        aux = {"d_loss": loss, "real_score": jnp.mean(real_logits), "fake_score": jnp.mean(fake_logits)}
        if r1:
            penalty = sg.r1_penalty(d_params, s.dcfg, reals)
            loss = loss + penalty * (s.r1_gamma * 0.5 * s.r1_every)
            aux["r1"] = penalty
        return loss, aux

    d_grads, d_metrics = jax.grad(d_loss_fn, has_aux=True)(state.d_params)
    d_updates, d_opt = d_tx.update(d_grads, state.d_opt, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    def g_loss_fn(g_params):
        images, w = fakes(g_params, s, k_g, n)
        return sg.generator_loss(sg.discriminator(d_params, s.dcfg, images)), w

    (g_loss, w), g_grads = jax.value_and_grad(g_loss_fn, has_aux=True)(state.g_params)
    g_updates, g_opt = g_tx.update(g_grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)

    new = state.replace(step=state.step + 1, g_params=g_params, d_params=d_params, g_opt=g_opt, d_opt=d_opt,
                        g_ema=sg.ema(state.g_ema, g_params, s.ema_decay),
                        w_avg=sg.update_w_avg(state.w_avg, jax.lax.stop_gradient(w), s.w_avg_decay))
    return new, {**d_metrics, "g_loss": g_loss, "lr": jnp.asarray(lr, jnp.float32)}


def make_gan_step(config, mesh, *, r1: bool) -> Callable:
    """`gan_step` jitted on ``mesh``: state replicated and donated, batch sharded over ``data``."""
    s = StepSettings.from_config(config)
    step = functools.partial(gan_step, s=s, g_tx=make_optimizer(config.g_lr, config),
                             d_tx=make_optimizer(config.d_lr, config), lr=config.g_lr, r1=r1)
    rep = parallel.replicated(mesh)
    return jax.jit(step, in_shardings=(rep, parallel.batch_sharded(mesh)), out_shardings=(rep, rep),
                   donate_argnums=(0,))


def batch_spec(config, mesh) -> dict[str, jax.ShapeDtypeStruct]:
    shape = (config.batch_size, config.resolution, config.resolution, 3)
    return {IMAGES: jax.ShapeDtypeStruct(shape, jnp.uint8, sharding=parallel.batch_sharded(mesh))}


class AlternatingStep:
    """The loop's ``step_fn``: the R1 program on every ``r1_every``-th step, the plain one otherwise.

    Which one runs depends only on the step number (counted on the host from the start step), so a
    resumed run takes the same programs at the same steps.
    """

    def __init__(self, with_r1: Callable, plain: Callable | None, r1_every: int, start_step: int):
        self.with_r1, self.plain, self.r1_every, self.done = with_r1, plain, max(1, int(r1_every)), int(start_step)

    def __call__(self, state, batch):
        fn = self.with_r1 if self.plain is None or self.done % self.r1_every == 0 else self.plain
        self.done += 1
        return fn(state, batch)


def compile_gan_steps(config, mesh, state: GANState, start_step: int) -> AlternatingStep:
    """The R1 step (and, with ``r1_every > 1``, the plain step) compiled ahead of time for ``state``."""
    t0 = time.time()
    spec = batch_spec(config, mesh)
    with_r1 = make_gan_step(config, mesh, r1=True).lower(state, spec).compile()
    plain = make_gan_step(config, mesh, r1=False).lower(state, spec).compile() if config.r1_every > 1 else None
    logging.info("Compiled the GAN step%s in %.1f s", "s" if plain is not None else "", time.time() - t0)
    return AlternatingStep(with_r1, plain, config.r1_every, start_step)


# --------------------------------------------------------------------------------------------------
# The run.
# --------------------------------------------------------------------------------------------------


def _validate(config) -> None:
    for key in ("num_steps", "batch_size", "log_every", "checkpoint_every", "r1_every"):
        if int(config[key]) <= 0:
            raise SetupError(f"config.{key} must be positive, got {config[key]}")
    if not 0.0 <= float(config.mixing_prob) <= 1.0:
        raise SetupError(f"config.mixing_prob must be in [0, 1], got {config.mixing_prob}")
    try:
        generator_config(config), discriminator_config(config)
    except ValueError as e:
        raise SetupError(f"config: {e}") from None


def create_input(config) -> input_pipeline.ImageStream:
    """The stream of ``config.data`` at ``config.resolution`` (shorter side resized, random square crop)."""
    data_dir = pathlib.Path(config.tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets")
    (source,) = data_sources.open_sources(config, data_dir.expanduser(), kinds=("data",))
    logging.info("Training on %d %s device(s), %d host(s); data %s (%d images)", jax.device_count(),
                 jax.default_backend(), jax.process_count(), config.data, len(source))
    return input_pipeline.ImageStream(source, seed=config.seed, stream=DATA_STREAM, image_size=config.resolution,
                                      crop_size=config.resolution, keep_aspect=config.keep_aspect)


def create_loader(config, stream: input_pipeline.ImageStream, position: int) -> input_pipeline.BatchLoader:
    return input_pipeline.BatchLoader({IMAGES: stream}, global_batch=config.batch_size, position=position,
                                      process_index=jax.process_index(), process_count=jax.process_count(),
                                      num_workers=config.num_workers, prefetch=config.prefetch)


def restore_latest(ckpt: checkpointing.Checkpointer, state: GANState, config,
                   stream) -> tuple[GANState, int, int]:
    """``(state, step, global data position)`` of the latest checkpoint, or ``(state, 0, 0)``."""
    latest = ckpt.latest_step()
    if latest is None:
        return state, 0, 0
    state, meta = ckpt.restore(latest, like=state)
    if meta.get("seed") != config.seed:
        raise SetupError(f"the checkpoints in this workdir were written with seed {meta.get('seed')}, the config "
                         f"says {config.seed}: resume needs the same seed or a new workdir")
    if meta.get("data_fingerprint") not in (None, stream.source.fingerprint):
        logging.warning("config.data now reads %s, the checkpoint was trained on %s: the data order after "
                        "resume differs from the interrupted run's", stream.source.fingerprint,
                        meta.get("data_fingerprint"))
    position = int(meta["data_position"])
    logging.info("Resuming from %s at step %d (global sample %d)", ckpt.step_dir(latest), latest, position)
    return state, latest, position


def _write_run_info(workdir: pathlib.Path, config, stream) -> None:
    info = {"config": json.loads(config.to_json_best_effort()), "data": stream.source.describe(),
            "generator_config": dataclasses.asdict(generator_config(config)), "devices": jax.device_count(),
            "processes": jax.process_count(), "backend": jax.default_backend(),
            "xla_cpu": decoder_training.xla_cpu_setting()}
    (workdir / "config.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def train_and_evaluate(config, workdir) -> GANState:
    """Train ``config.num_steps`` steps in ``workdir``, resuming from its latest checkpoint if any.

    Raises SetupError for bad settings or data. On SIGTERM or Ctrl-C the current step finishes, a
    checkpoint is saved and SystemExit(128 + signal) is raised.
    """
    _validate(config)
    decoder_training.quiet_library_logs()
    workdir = pathlib.Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    decoder_training.use_compilation_cache(config)

    mesh = parallel.make_mesh()
    decoder_training.check_batch_size(config.batch_size, mesh.size)
    stream = create_input(config)
    g_tx, d_tx = make_optimizer(config.g_lr, config), make_optimizer(config.d_lr, config)
    state = parallel.put_replicated(create_gan_state(config, g_tx, d_tx), mesh)
    with contextlib.closing(checkpointing.Checkpointer(workdir, max_to_keep=config.keep_checkpoints,
                                                       adapter=GAN_ITEMS)) as ckpt:
        state, start_step, position = restore_latest(ckpt, state, config, stream)
        if start_step >= config.num_steps:
            logging.info("Already trained to step %d >= config.num_steps = %d; nothing to do", start_step,
                         config.num_steps)
            return state
        if jax.process_index() == 0:
            _write_run_info(workdir, config, stream)
        step_fn = compile_gan_steps(config, mesh, state, start_step)
        sample_writer = None
        if config.sample_every > 0 and jax.process_index() == 0:
            from train import gan_samples

            grid = gan_samples.SampleGrid(generator_config(config), count=config.num_samples,
                                          cell=config.sample_size)
            sample_writer = functools.partial(grid.write_for_state, workdir=workdir)
        run = loop.TrainLoop(config, workdir, mesh, step_fn, ckpt, start_step=start_step, position=position,
                             loader=create_loader(config, stream, position), sample_writer=sample_writer,
                             meta_extra={"data_fingerprint": stream.source.fingerprint,
                                         "generator_config": dataclasses.asdict(generator_config(config))},
                             progress_keys=("d_loss", "g_loss"))
        return run.run(state)
