"""adain_jax.stylegan.objectives: the logistic GAN losses and R1 against direct computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax import stylegan as sg

DCFG = sg.DiscriminatorConfig(resolution=8, channels=1, max_features=8, min_features=8, mbstd_group=1)


def test_losses_are_the_logistic_ones():
    real = np.array([-3.0, 0.0, 2.5])
    fake = np.array([1.0, -0.5, 4.0])
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    assert float(sg.generator_loss(jnp.asarray(fake))) == pytest.approx(np.mean(softplus(-fake)), rel=1e-6)
    assert float(sg.discriminator_loss(jnp.asarray(real), jnp.asarray(fake))) == pytest.approx(
        np.mean(softplus(fake)) + np.mean(softplus(-real)), rel=1e-6)
    assert float(sg.generator_loss(jnp.zeros(4))) == pytest.approx(np.log(2))


def test_r1_is_the_mean_squared_gradient_norm_on_reals():
    d = sg.init_discriminator(DCFG, 0)
    x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (3, 8, 8, 1)), jnp.float32)
    # With groups of one image, each logit depends on its own image only: per-image gradients.
    single = jax.jit(jax.vmap(jax.grad(lambda im: sg.discriminator_fn(d, DCFG, im[None])[0])))
    norms = np.sum(np.asarray(single(x), np.float64) ** 2, axis=(1, 2, 3))
    r1_penalty = jax.jit(sg.r1_penalty, static_argnums=1)
    r1 = float(r1_penalty(d, DCFG, x))
    assert r1 == pytest.approx(np.mean(norms), rel=1e-4)
    # Doubling the logit layer doubles D's gradient, so R1 grows four-fold.
    d2 = {**d, "block4": {**d["block4"], "logit": jax.tree.map(lambda v: 2 * v, d["block4"]["logit"])}}
    assert float(r1_penalty(d2, DCFG, x)) == pytest.approx(4 * r1, rel=1e-4)
    grads = jax.jit(jax.grad(sg.r1_penalty), static_argnums=1)(d, DCFG, x)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(grads))
