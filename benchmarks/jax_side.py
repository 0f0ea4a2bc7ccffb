"""The adain-jax side of the benchmarks: the library's public jitted functions."""

from __future__ import annotations

import functools

import numpy as np

import adain_jax  # first: adain_jax sets its XLA flags before JAX's backend starts
import jax
import jax.numpy as jnp
from adain_jax.model import losses
from convert import torch_layout


class JaxSide:
    name = "jax"

    def __init__(self, vgg_sd: dict, dec_sd: dict):
        # The library's converter, as for the official files (OIHW -> HWIO).
        self.weights = jax.device_put(torch_layout.weights_from_torch("vgg_normalised.pth", vgg_sd, "decoder.pth", dec_sd))

    def inputs(self, x: np.ndarray):
        return jax.device_put(jnp.asarray(x))

    def stylize(self, content, style):
        return adain_jax.stylize(self.weights, content, style).block_until_ready()

    def style_moments(self, style):
        return jax.block_until_ready(adain_jax.style_moments(self.weights, style))

    def stylize_with_moments(self, content, moments):
        return adain_jax.stylize_with_moments(self.weights, content, *moments).block_until_ready()

    def to_numpy(self, out) -> np.ndarray:
        return np.asarray(out)

    def train_step(self):
        """A jitted step: the port's loss (`adain_jax.model.losses.adain_loss`) and its decoder gradients,
        then Adam (train.py: lr 1e-4), parameters and optimizer state donated as in a training loop."""
        import optax

        opt = optax.adam(1e-4)
        encoder = self.weights["encoder"]

        @functools.partial(jax.jit, donate_argnums=(0, 1))
        def step(decoder, opt_state, content, style):
            (loss, _), grads = jax.value_and_grad(losses.adain_loss, has_aux=True)(decoder, encoder, content, style)
            updates, opt_state = opt.update(grads, opt_state, decoder)
            return optax.apply_updates(decoder, updates), opt_state, loss

        state = {"decoder": jax.tree.map(jnp.copy, self.weights["decoder"])}
        state["opt"] = opt.init(state["decoder"])

        def run(content, style) -> float:
            state["decoder"], state["opt"], loss = step(state["decoder"], state["opt"], content, style)
            return float(loss)

        return run
