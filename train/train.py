"""Training of the AdaIN decoder: the train state, the jitted data-parallel step, and the run.

`train_and_evaluate(config, workdir)` is the whole run, in named pieces: mesh, input
(`create_input`), state (`create_train_state`), restore (`restore_latest`), step
(`compile_train_step`) and the loop (`train.loop.TrainLoop`). `train_step(state, batch)` is the pure
function it jits: the PyTorch port's loss (`adain_jax.model.losses.adain_loss`), gradients for the decoder
only (the encoder is frozen), one Adam update with the learning rate ``lr / (1 + lr_decay * step)``.
It runs on a ``('data',)`` mesh over every device: batch sharded, state replicated, the state's
buffers donated, compiled once ahead of time (`make_train_step`).

Decoder variants and the study's switches (`adain_jax.model.variants`): ``config.skip``,
``config.skip_source`` and ``config.input_norm`` choose the network (`variant_from_config`; the
decoder's params take its shapes, and the checkpoints' meta config records it, which is where
`adain_jax.load_weights` finds it), ``config.statistics`` the loss's style statistics. The
variant is static: it is not in the TrainState, it is a constant of the compiled step.

Resume is exact: the step, Adam state and weights come from the latest Orbax checkpoint, and the
input pipeline continues at the saved global sample position with the same seed, so the remaining
steps see the same batches and compute the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging as std_logging
import os
import pathlib
import time
from typing import Any, Callable

import absl.logging as logging
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

import adain_jax
from adain_jax.model import architecture, initialisation, losses, networks, variants
from adain_jax import compilation_cache, parallel, xla_flags
from adain_jax.io import weights as weights_io
from train import checkpointing, input_pipeline, loop, samples
from train.errors import SetupError

@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: updates done
    params: Any  # decoder parameters (trained)
    encoder: Any  # encoder parameters (frozen; carried so the step is a pure function of its inputs)
    opt_state: Any


# --------------------------------------------------------------------------------------------------
# Optimiser, initialisation, weights.
# --------------------------------------------------------------------------------------------------


def inverse_time_schedule(lr: float, decay: float, warmup: int = 0) -> optax.Schedule:
    """train.py's ``adjust_learning_rate``: ``lr / (1 + decay * step)``, step counted from 0; with
    ``warmup`` > 0 scaled by ``min(1, (step + 1) / warmup)``. Fine-tuning a trained decoder starts Adam
    afresh, and a fresh Adam's first updates move every weight by about the whole learning rate (its
    moment estimates are one gradient each), which a trained decoder feels: the warm-up spreads them."""

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        ramp = jnp.minimum(1.0, (count + 1.0) / warmup) if warmup > 0 else 1.0
        return lr * ramp / (1.0 + decay * count)

    return schedule


def make_optimizer(config) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """``torch.optim.Adam(decoder.parameters(), lr)`` (betas 0.9/0.999, eps 1e-8) with the schedule."""
    schedule = inverse_time_schedule(config.lr, config.lr_decay, config.get("lr_warmup", 0))
    return optax.adam(learning_rate=schedule, b1=0.9, b2=0.999, eps=1e-8), schedule


def init_decoder(seed: int, variant: variants.DecoderVariant | None = None) -> dict:
    """PyTorch's default ``nn.Conv2d`` initialisation, as the port's freshly built decoder has it
    (`adain_jax.model.initialisation.torch_default_params`).

    Drawn with numpy (seeded by ``seed``): the same values on every host, and no 20 s XLA compile of a
    jitted RNG on CPU. ``variant``: the shapes of that decoder (`variants.decoder_specs`).
    """
    return initialisation.torch_default_params(np.random.default_rng([seed, 0xADA1]),
                                               variants.decoder_specs(variant))


def variant_from_config(config) -> variants.DecoderVariant:
    """The decoder variant ``config.skip``/``skip_source``/``input_norm`` ask for; SetupError naming a bad key."""
    for key, allowed in (("skip", variants.SKIPS), ("skip_source", variants.SKIP_SOURCES),
                         ("input_norm", variants.INPUT_NORMS), ("statistics", variants.STATISTICS)):
        value = config.get(key, allowed[0])
        if value not in allowed:
            raise SetupError(f"config.{key} must be one of {', '.join(allowed)}, got {value!r}")
    return variants.DecoderVariant.from_json({k: config.get(k) for k in variants.CONFIG_KEYS})


def load_vgg(path) -> dict:
    """The weights directory ``config.vgg`` (converter output); SetupError naming it if unusable."""
    if not str(path).strip():
        raise SetupError("config.vgg is not set: pass --config.vgg=DIR, a weights directory written by "
                         "`python -m convert.vgg_to_flax` (it holds the VGG encoder)")
    try:
        return adain_jax.load_weights(os.path.expanduser(str(path)))
    except (FileNotFoundError, ValueError, OSError) as e:
        message = " ".join(str(e).split())
        raise SetupError(message if str(path) in message else f"{path}: {message}") from None


def create_train_state(config, vgg: dict, tx: optax.GradientTransformation) -> TrainState:
    """Step 0: the frozen VGG encoder, a fresh decoder (or the vgg directory's, to fine-tune)."""
    variant = variant_from_config(config)
    if config.init_decoder == "random":
        decoder = init_decoder(config.seed, variant)
    elif config.init_decoder == "vgg":
        decoder = vgg["decoder"]
        for spec in variants.decoder_specs(variant):
            if np.shape(decoder[spec.name]["kernel"]) != spec.flax_kernel_shape:
                raise SetupError(f"config.init_decoder='vgg': the decoder in {config.vgg} "
                                 f"({variants.of(vgg).describe()}) does not have the shapes of the configured "
                                 f"one ({variant.describe()}): {spec.name} is {np.shape(decoder[spec.name]['kernel'])}")
    else:
        raise SetupError(f"config.init_decoder must be 'random' or 'vgg', got {config.init_decoder!r}")
    decoder = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), decoder)
    return TrainState(step=jnp.zeros((), jnp.int32), params=decoder,
                      encoder=jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), vgg["encoder"]),
                      opt_state=tx.init(decoder))


# --------------------------------------------------------------------------------------------------
# The step.
# --------------------------------------------------------------------------------------------------


def style_weight_at(step: jax.Array | int, style_weight: float, warmup: int) -> jax.Array | float:
    """The style weight at ``step``: ``style_weight``, or with ``warmup`` > 0 a linear ramp from 0.

    Why a ramp: from a random decoder the style term (10x, four layers) dominates the gradient, and
    on a CPU's budget of a few thousand steps the decoder learns to paint the style's statistics
    and never learns to reconstruct the content (docs/real_model.md: content loss flat at 11-12 over
    1,361 steps; with the style weight at 0 it fell from 9.4 to 7.6 in 50 steps). The ramp lets the
    content come first.
    """
    if warmup <= 0:
        return style_weight  # a Python constant: the compiled step is the port's
    return style_weight * jnp.minimum(1.0, jnp.asarray(step, jnp.float32) / warmup)


def train_step(state: TrainState, batch: dict[str, jax.Array], *, tx: optax.GradientTransformation,
               schedule: optax.Schedule, content_weight: float, style_weight: float,
               style_weight_warmup: int = 0, dtype: Any = jnp.float32,
               variant: variants.DecoderVariant | None = None,
               statistics: str = "instance") -> tuple[TrainState, dict[str, jax.Array]]:
    """One Adam step on the decoder. ``batch``: uint8 NHWC ``content`` and ``style`` images.

    ``style_weight_warmup`` > 0 grows the style weight linearly from 0 at step 0 to ``style_weight``
    at that step (`style_weight_at`); 0 is the port's constant weight. ``variant`` and ``statistics``:
    the study's switches (`losses.adain_loss`). Under the data-parallel jit, ``statistics="batch"``
    pools over the *global* batch (every device's share).
    """
    # transforms.ToTensor(): uint8 / 255 in float32.
    content = batch["content"].astype(jnp.float32) / 255.0
    style = batch["style"].astype(jnp.float32) / 255.0
    weight = style_weight_at(state.step, style_weight, style_weight_warmup)
    loss_fn = functools.partial(losses.adain_loss, content_weight=content_weight, style_weight=weight,
                                dtype=dtype, variant=variant, statistics=statistics)
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, state.encoder, content, style)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, **aux, "lr": schedule(state.step)}
    if style_weight_warmup > 0:
        metrics["style_weight"] = weight
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def make_train_step(config, mesh, tx, schedule) -> Callable:
    """`train_step` jitted on ``mesh``: state replicated and donated, batch sharded over ``data``."""
    step = functools.partial(train_step, tx=tx, schedule=schedule, content_weight=config.content_weight,
                             style_weight=config.style_weight,
                             style_weight_warmup=int(config.get("style_weight_warmup", 0)),
                             dtype=compute_dtype(config),
                             variant=variant_from_config(config), statistics=config.get("statistics", "instance"))
    rep = parallel.replicated(mesh)
    return jax.jit(step, in_shardings=(rep, parallel.batch_sharded(mesh)), out_shardings=(rep, rep),
                   donate_argnums=(0,))


def batch_spec(config, mesh) -> dict[str, jax.ShapeDtypeStruct]:
    shape = (config.batch_size, config.crop_size, config.crop_size, 3)
    sharding = parallel.batch_sharded(mesh)
    return {k: jax.ShapeDtypeStruct(shape, jnp.uint8, sharding=sharding) for k in ("content", "style")}


# --------------------------------------------------------------------------------------------------
# The run, piece by piece: checks, mesh, input, state, restore, step, loop.
# --------------------------------------------------------------------------------------------------


def _validate(config) -> None:
    for key in ("num_steps", "batch_size", "log_every", "checkpoint_every", "image_size", "crop_size"):
        if int(config[key]) <= 0:
            raise SetupError(f"config.{key} must be positive, got {config[key]}")
    if config.dtype not in DTYPES:
        raise SetupError(f"config.dtype must be one of {', '.join(DTYPES)}, got {config.dtype!r}")
    if config.crop_size % architecture.DOWNSAMPLE_FACTOR:
        raise SetupError(f"config.crop_size ({config.crop_size}) must be a multiple of "
                         f"{architecture.DOWNSAMPLE_FACTOR}")
    variant_from_config(config)


DTYPES = ("float32", "bfloat16", "auto")


def _bfloat16_trains_faster() -> bool:
    """Whether bfloat16 convolutions train faster than float32 here: on GPU and TPU, and on CPUs whose
    bfloat16 unit oneDNN drives at more than the float32 rate (one CPU device: on a mesh of several, the
    layers run XLA's convolutions, whose bfloat16 is 1.4x slower than their float32). Measured with the
    packaged config's step (128x128 crops, batch 8; docs/performance.md): an AMD EPYC Zen 5 with
    AVX512-BF16, 0.65 s bfloat16 against 1.05 s float32 (its bfloat16 matmul peak is twice the float32);
    an Intel Xeon with AVX512-BF16 but no AMX, 3.25 s against 1.78 s (there bfloat16's peak is half);
    AMX-BF16, 0.67x at 256x256. AMD's Zen 4 has the Zen 5's AVX512-BF16 instructions and is counted with
    it, unmeasured."""
    from adain_jax import cpuinfo, onednn

    if jax.default_backend() != "cpu":
        return True
    if networks.cpu_mesh() or not onednn.available("bfloat16"):
        return False
    flags = cpuinfo.flags()
    return "amx_bf16" in flags or ("avx512_bf16" in flags and cpuinfo.vendor() == "AuthenticAMD")


def compute_dtype(config) -> jnp.dtype:
    """The convolutions' dtype: ``config.dtype``, where ``"auto"`` is the faster one on this machine
    (`_bfloat16_trains_faster`). Parameters, statistics and losses are float32 either way."""
    if config.dtype == "auto":
        return jnp.dtype(jnp.bfloat16 if _bfloat16_trains_faster() else jnp.float32)
    return jnp.dtype(config.dtype)


def warn_about_cpu_bfloat16(config) -> None:
    """One warning when a run asks for bfloat16 on a CPU where float32 trains faster
    (`_bfloat16_trains_faster`); ``config.dtype="auto"`` chooses for itself."""
    if config.dtype == "bfloat16" and not _bfloat16_trains_faster():
        logging.warning("config.dtype=bfloat16 on a CPU where float32 trains faster (1.8x on an Intel Xeon with "
                        "AVX512-BF16 but no AMX, docs/performance.md); --config.dtype=auto chooses the faster one.")


def check_batch_size(global_batch: int, num_devices: int) -> None:
    """The global batch is split evenly over the mesh's devices."""
    if global_batch % num_devices:
        raise SetupError(f"config.batch_size ({global_batch}) must be a multiple of the number of devices "
                         f"({num_devices})")


class _QuietLibraries:
    """A logging filter: INFO messages of Orbax (dozens per checkpoint) are dropped; warnings kept."""

    NOISY = (f"{os.sep}orbax{os.sep}", f"{os.sep}tensorflow_datasets{os.sep}")

    def filter(self, record) -> bool:
        return record.levelno >= std_logging.WARNING or not any(n in record.pathname for n in self.NOISY)


def quiet_library_logs() -> None:
    handler = logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())


def use_compilation_cache(config) -> None:
    if config.compilation_cache_dir:
        compilation_cache.enable(config.compilation_cache_dir)  # a directory the user gave JAX itself wins


def xla_cpu_setting() -> dict[str, str]:
    """Which XLA:CPU convolution setting this process runs with (see `adain_jax.xla_flags`)."""
    return {"adain_jax_flags": xla_flags.status, "XLA_FLAGS": os.environ.get("XLA_FLAGS", "")}


def create_input(config) -> tuple[input_pipeline.ImageStream, input_pipeline.ImageStream]:
    """The content and style streams of ``config`` (folders are prepared as TFDS datasets once)."""
    data_dir = config.tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    content, style = input_pipeline.create_streams(config, pathlib.Path(data_dir).expanduser())
    logging.info("Training on %d %s device(s), %d host(s); content %s (%d images), style %s (%d images)",
                 jax.device_count(), jax.default_backend(), jax.process_count(), config.content,
                 len(content.source), config.style, len(style.source))
    if jax.default_backend() == "cpu":
        logging.info("XLA:CPU convolution setting: %s (XLA_FLAGS=%r)", xla_flags.status, os.environ.get("XLA_FLAGS", ""))
    return content, style


def _check_resume(meta: dict, config, content, style) -> None:
    if meta.get("seed") != config.seed:
        raise SetupError(f"the checkpoints in this workdir were written with seed {meta.get('seed')}, the config "
                         f"says {config.seed}: resume needs the same seed (pass --config.seed={meta.get('seed')}) "
                         "or use a new workdir")
    for kind, stream in (("content", content), ("style", style)):
        old = meta.get(f"{kind}_fingerprint")
        if old and old != stream.source.fingerprint:
            logging.warning("config.%s now reads %s, the checkpoint was trained on %s: the data order after "
                            "resume differs from the interrupted run's", kind, stream.source.fingerprint, old)
    if meta.get("batch_size") not in (None, config.batch_size):
        logging.warning("batch size changed from %s to %s on resume; continuing at sample %s",
                        meta.get("batch_size"), config.batch_size, meta.get("data_position"))


def restore_latest(ckpt: checkpointing.Checkpointer, state: TrainState, config, content,
                   style) -> tuple[TrainState, int, int]:
    """``(state, step, global data position)`` of the latest checkpoint, or ``(state, 0, 0)`` if there is none."""
    latest = ckpt.latest_step()
    if latest is None:
        return state, 0, 0
    recorded, wanted = weights_io.read_variant(ckpt.step_dir(latest)), variant_from_config(config)
    if recorded != wanted:  # an add decoder has the plain one's shapes: restoring would not notice
        raise SetupError(f"the checkpoints in this workdir are for the decoder {recorded.describe()}, the config "
                         f"asks for {wanted.describe()}: use the same config.skip, config.skip_source and "
                         "config.input_norm to resume, or a new workdir")
    state, meta = ckpt.restore(latest, like=state)
    _check_resume(meta, config, content, style)
    position = int(meta["data_position"])
    logging.info("Resuming from %s at step %d (global sample %d)", ckpt.step_dir(latest), latest, position)
    return state, latest, position


def compile_train_step(config, mesh, tx, schedule, state: TrainState) -> Callable:
    """`make_train_step` compiled ahead of time for ``state`` and ``config``'s batch."""
    t0 = time.time()
    with compilation_cache.jax_cache_hits() as hits:
        step_fn = make_train_step(config, mesh, tx, schedule).lower(state, batch_spec(config, mesh)).compile()
    # Said in the log so that a restart shows it did not pay the compilation again (config.compilation_cache_dir).
    where = ("loaded from the compilation cache" if hits else
             "stored in the compilation cache for the next run" if jax.config.jax_compilation_cache_dir else
             "no compilation cache")
    logging.info("Compiled the train step in %.1f s (%s)", time.time() - t0, where)
    return step_fn


def _write_run_info(workdir: pathlib.Path, config, content, style) -> None:
    info = {"config": json.loads(config.to_json_best_effort()), "content": content.source.describe(),
            "style": style.source.describe(), "devices": jax.device_count(), "processes": jax.process_count(),
            "backend": jax.default_backend(), "xla_cpu": xla_cpu_setting()}
    (workdir / "config.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def sample_writer(config, workdir, content, style) -> Callable | None:
    """``(state, step) -> (path, grid)``: the sample grid of ``config``'s decoder variant (process 0)."""
    if config.sample_every <= 0 or jax.process_index() != 0:
        return None
    grid = samples.SampleGrid(config.sample_content or content, config.sample_style or style,
                              count=config.num_samples, size=config.sample_size,
                              variant=variant_from_config(config))

    def write(state, step):
        return grid.write(parallel.local_copy({"encoder": state.encoder, "decoder": state.params}), step, workdir)

    return write


def train_and_evaluate(config, workdir) -> TrainState:
    """Train ``config.num_steps`` steps in ``workdir``, resuming from its latest checkpoint if any.

    Raises SetupError for missing or empty inputs. On SIGTERM or Ctrl-C the current step finishes,
    a checkpoint is saved and SystemExit(128 + signal) is raised.
    """
    _validate(config)
    quiet_library_logs()
    workdir = pathlib.Path(workdir).expanduser().absolute()
    workdir.mkdir(parents=True, exist_ok=True)
    use_compilation_cache(config)

    mesh = parallel.make_mesh()
    check_batch_size(config.batch_size, mesh.size)
    warn_about_cpu_bfloat16(config)
    logging.info("Convolutions in %s (config.dtype=%s)", compute_dtype(config).name, config.dtype)
    content, style = create_input(config)
    tx, schedule = make_optimizer(config)
    state = parallel.put_replicated(create_train_state(config, load_vgg(config.vgg), tx), mesh)
    with contextlib.closing(checkpointing.Checkpointer(workdir, max_to_keep=config.keep_checkpoints)) as ckpt:
        state, start_step, position = restore_latest(ckpt, state, config, content, style)
        if start_step >= config.num_steps:
            logging.info("Already trained to step %d >= config.num_steps = %d; nothing to do", start_step,
                         config.num_steps)
            return state
        if jax.process_index() == 0:
            _write_run_info(workdir, config, content, style)
        step_fn = compile_train_step(config, mesh, tx, schedule, state)
        run = loop.TrainLoop(config, workdir, mesh, step_fn, ckpt, content, style, start_step=start_step,
                             position=position, sample_writer=sample_writer(config, workdir, content, style))
        return run.run(state)
