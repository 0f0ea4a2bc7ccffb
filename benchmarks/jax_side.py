"""The adain-jax side of the benchmarks: the library's public jitted functions and training's step,
in one compute precision (``precision="float32"`` or ``"bfloat16"``, `adain_jax.precision`)."""

from __future__ import annotations

import numpy as np

import adain_jax  # first: adain_jax sets its XLA flags before JAX's backend starts
import jax
import jax.numpy as jnp
from adain_jax import precision as precision_lib
from convert import torch_layout


# The side's name in the benchmark's tables and JSON, per precision.
NAMES = {"float32": "jax", "bfloat16": "jax_bf16"}


class JaxSide:
    def __init__(self, vgg_sd: dict, dec_sd: dict, precision: str = "float32"):
        self.precision = precision_lib.check(precision)
        self.name = NAMES[self.precision]
        # The library's converter, as for the official files (OIHW -> HWIO).
        self.weights = jax.device_put(torch_layout.weights_from_torch("vgg_normalised.pth", vgg_sd, "decoder.pth", dec_sd))

    def inputs(self, x: np.ndarray):
        return jax.device_put(jnp.asarray(x))

    def stylize(self, content, style):
        return adain_jax.stylize(self.weights, content, style, precision=self.precision).block_until_ready()

    def style_moments(self, style):
        return jax.block_until_ready(adain_jax.style_moments(self.weights, style, precision=self.precision))

    def stylize_with_moments(self, content, moments):
        return adain_jax.stylize_with_moments(self.weights, content, *moments,
                                              precision=self.precision).block_until_ready()

    def to_numpy(self, out) -> np.ndarray:
        return np.asarray(out)

    # The train step takes uint8 images, as training's input pipeline gives them (see run_train).
    train_takes_uint8 = True

    def train_step(self):
        """Training's own step (`train.train.compile_train_step`): the paper's config (Adam, lr 1e-4 with its
        decay, content weight 1, style weight 10), on training's mesh, state donated, compiled ahead of time
        for the first batch's shape (so the first call includes the compile, as jit's would); the decoder
        starts from the benchmark's weights, like the PyTorch side's. The side's precision is training's
        ``config.dtype``: in bfloat16 the 3x3 convolutions and their gradients go through `adain_jax.onednn`
        where the CPU has a bfloat16 unit (XLA's own bfloat16 convolutions elsewhere), parameters and
        statistics in float32."""
        from adain_jax import parallel
        from train import train
        from train.configs import default

        mesh = parallel.make_mesh()
        sharding = parallel.batch_sharded(mesh)
        held = {}

        def compile_for(batch: int, size: int) -> None:
            config = default.get_config()
            config.update(dict(batch_size=batch, crop_size=size, init_decoder="vgg", dtype=self.precision))
            tx, schedule = train.make_optimizer(config)
            host = jax.tree.map(np.asarray, self.weights)  # the state is built from copies: donation spares these
            held["state"] = parallel.put_replicated(train.create_train_state(config, host, tx), mesh)
            held["step"] = train.compile_train_step(config, mesh, tx, schedule, held["state"])

        def run(content, style) -> float:
            if "step" not in held:
                compile_for(content.shape[0], content.shape[1])
            images = jax.device_put({"content": content, "style": style}, sharding)
            held["state"], metrics = held["step"](held["state"], images)
            return float(metrics["loss"])

        return run
