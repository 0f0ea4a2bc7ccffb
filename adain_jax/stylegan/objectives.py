"""The GAN objectives of StyleGAN: non-saturating logistic loss for G, logistic loss for D, R1.

R1 (Mescheder et al. 2018) penalises the squared gradient norm of D on real images; the caller
multiplies it by gamma / 2 (StyleGAN: gamma = 10 on FFHQ).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from adain_jax.stylegan.config import DiscriminatorConfig
from adain_jax.stylegan.discriminator_network import discriminator_fn


def generator_loss(fake_logits: jax.Array) -> jax.Array:
    """Non-saturating logistic loss: mean softplus(-D(G(z)))."""
    return jnp.mean(jax.nn.softplus(-fake_logits))


def discriminator_loss(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """Logistic loss: mean softplus(D(G(z))) + mean softplus(-D(x))."""
    return jnp.mean(jax.nn.softplus(fake_logits)) + jnp.mean(jax.nn.softplus(-real_logits))


def r1_penalty(d_params: dict, dcfg: DiscriminatorConfig, reals: jax.Array) -> jax.Array:
    """Mean over the batch of ||grad_x D(x)||^2 on real images (times gamma / 2 by the caller).

    The gradient of the summed logits gives every image its own gradient: the minibatch-stddev
    feature couples images only through a term that R1 implementations (NVlabs included) keep too.
    """
    grads = jax.grad(lambda x: jnp.sum(discriminator_fn(d_params, dcfg, x)))(reals.astype(jnp.float32))
    return jnp.mean(jnp.sum(jnp.square(grads), axis=(1, 2, 3)))
