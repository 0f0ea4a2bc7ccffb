"""adain_jax.model.initialisation: one rule for init_weights and the Flax modules' init; PyTorch's for training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from adain_jax.model import architecture, initialisation, modules, networks


def test_init_weights_and_decoder_init_draw_the_same_distribution():
    """Same rule per layer (std sqrt(2 / fan_in); the output layer x0.05 around 0.5), different generators."""
    numpy_drawn = networks.init_weights(0)["decoder"]
    flax_drawn = jax.jit(lambda key: modules.Decoder().init(key, jnp.zeros((1, 2, 2, 512))))(jax.random.key(0))
    flax_drawn = flax_drawn["params"]
    for spec in architecture.DECODER:
        last = spec is architecture.DECODER[-1]
        want_std = np.sqrt(2.0 / (9 * spec.in_channels)) * (0.05 if last else 1.0)
        for params in (numpy_drawn, flax_drawn):
            kernel, bias = np.asarray(params[spec.name]["kernel"]), np.asarray(params[spec.name]["bias"])
            assert kernel.shape == spec.flax_kernel_shape
            assert abs(kernel.std() / want_std - 1) < 0.1, spec.name  # >= 1728 draws: ~2% sampling error
            assert abs(kernel.mean()) < 0.1 * want_std
            np.testing.assert_array_equal(bias, np.full(spec.out_channels, 0.5 if last else 0.0))
    # A plain normal, not the truncated one of Flax's he_normal (cut at two standard deviations).
    first = architecture.DECODER[0]
    tail = np.abs(np.asarray(flax_drawn[first.name]["kernel"])) > 2.5 * np.sqrt(2.0 / (9 * first.in_channels))
    assert tail.mean() > 0.005  # 1.2 % of a normal's draws; the kernel has 1.2 million


def test_torch_default_params_are_uniform_in_the_fan_in_bound():
    spec = architecture.DECODER[0]
    params = initialisation.torch_default_params(np.random.default_rng(0), [spec])[spec.name]
    bound = 1 / np.sqrt(9 * spec.in_channels)
    for values in params.values():
        assert values.dtype == np.float32 and np.abs(values).max() <= bound * (1 + 1e-6)
        assert np.abs(values).max() > 0.9 * bound
