"""Initial parameters for the layer table: the one owner of every rule the project draws them with.

Two rules:

- `he_params` (He-normal kernels, std ``sqrt(2 / fan_in)``, zero biases; the decoder's last layer
  scaled by `LAST_SCALE` and biased to `LAST_BIAS`, so that an untrained model's output lies mostly
  inside [0, 1]): `networks.init_weights` draws it with numpy, and the Flax modules' ``init``
  (`modules.LayerParams`, through `flax_initializers`) draws the same distribution with jax.random.
- `torch_default_params` (PyTorch's default ``nn.Conv2d`` initialisation): the freshly built decoder
  the port trains from, used by ``train.train.init_decoder``.

Why ``Decoder().init(key, ...)`` draws the same distribution as ``init_weights(key)`` but not the same
numbers: Flax hands every parameter its own key, split from the one given to ``init``, and draws with
jax.random inside the module; `init_weights` draws every layer from one numpy generator in layer order,
so that building random weights compiles no XLA program (a jitted random draw per layer shape takes
tens of seconds on a CPU).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from adain_jax.model import architecture

LAST_SCALE = 0.05  # the decoder's last layer: small kernels ...
LAST_BIAS = 0.5    # ... around mid-grey


def fan_in(spec: architecture.ConvSpec) -> int:
    return spec.kernel_size * spec.kernel_size * spec.in_channels


def he_rule(spec: architecture.ConvSpec, last: bool = False) -> tuple[float, float]:
    """(kernel std, bias value) of `he_params` for one layer (``last``: the decoder's output layer)."""
    scale = LAST_SCALE if last else 1.0
    return scale * math.sqrt(2.0 / fan_in(spec)), (LAST_BIAS if last else 0.0)


def he_params(gen: np.random.Generator, specs: Sequence[architecture.ConvSpec], *,
              last_is_output: bool = False) -> dict:
    """``{layer: {"kernel", "bias"}}`` drawn from ``gen`` in layer order (float32 numpy arrays)."""
    out = {}
    for i, spec in enumerate(specs):
        std, bias = he_rule(spec, last=last_is_output and i == len(specs) - 1)
        kernel = gen.standard_normal(spec.flax_kernel_shape, np.float32) * np.float32(std)
        out[spec.name] = {"kernel": kernel, "bias": np.full((spec.out_channels,), bias, np.float32)}
    return out


def flax_initializers(spec: architecture.ConvSpec, last: bool = False):
    """(kernel, bias) Flax initializers drawing what `he_params` draws for this layer."""
    import flax.linen as nn

    std, bias = he_rule(spec, last)
    return nn.initializers.normal(stddev=std), nn.initializers.constant(bias)


def torch_default_params(gen: np.random.Generator, specs: Sequence[architecture.ConvSpec]) -> dict:
    """PyTorch's default ``nn.Conv2d`` initialisation: ``kaiming_uniform_(a=sqrt(5))`` for the kernels
    and the matching bias rule, both uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``."""
    out = {}
    for spec in specs:
        bound = 1.0 / math.sqrt(fan_in(spec))
        out[spec.name] = {
            "kernel": gen.uniform(-bound, bound, spec.flax_kernel_shape).astype(np.float32),
            "bias": gen.uniform(-bound, bound, (spec.out_channels,)).astype(np.float32),
        }
    return out
