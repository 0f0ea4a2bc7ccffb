"""The optimisation-based style transfer of Gatys et al. (CVPR 2016) as one compiled program.

The image itself is optimised so that its VGG features (the same encoder as AdaIN's, up to relu4_1)
match the content at relu4_1 and the style's statistics at relu1_1..relu4_1:

    loss(x) = content_weight * mse(f(x)_relu4_1, target) + style_weight * style(f(x), f(s))

with ``style`` the Gram-matrix loss of Gatys et al. (`metrics.gram_style_loss`) or the port's
mean/std loss (`adain_jax.model.losses.style_loss`, the paper's Figure 3 "for a fair comparison"),
and ``target`` the content's relu4_1 features (Gatys) or the AdaIN target ``adain(f(c), f(s))``
(the content loss the AdaIN decoder is trained on and `metrics` reports).

Images stay in [0, 1] by construction: the optimised variable is an unconstrained ``z`` and the
image is ``sigmoid(z)`` (no clipping or projection, so L-BFGS sees a smooth problem). Content
initialisation starts from ``logit`` of the content clipped to [1e-3, 1 - 1e-3]; noise
initialisation from uniform noise in that range.

`gatys` runs the whole optimisation inside one ``jax.jit``: a `jax.lax.scan` over the iterations
with `optax.lbfgs` (its zoom line search, which evaluates the loss and gradient as often as it
needs per iteration) or `optax.adam`. Several pairs run at once through `jax.vmap`, each with its
own optimiser state and line search, so a batch gives the same iterates as the pairs run one by one.

The loss curve is recorded one way for both optimisers (`_run`): each step records the losses at the
iterate it starts from, and the last iterate's are added after the loop, so entry ``i`` is the loss
at iterate ``i`` (entry 0 the initial image, the last the returned image).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax

from adain_jax.model import losses, networks
from adain_jax.quality import metrics

OPTIMIZERS = ("lbfgs", "adam")
INITS = ("content", "noise")
STYLE_LOSSES = ("gram", "meanstd")
CONTENT_TARGETS = ("content", "adain")
_EPS = 1e-3  # images start inside [EPS, 1 - EPS]: logit(0) and logit(1) are infinite


def targets(encoder_params: Any, content: jax.Array, style: jax.Array,
            content_target: str = "content") -> tuple[jax.Array, dict[str, jax.Array]]:
    """(relu4_1 content target, style features) for NHWC content and style batches."""
    if content_target not in CONTENT_TARGETS:
        raise ValueError(f"content_target must be one of {CONTENT_TARGETS}, got {content_target!r}")
    content_feat = networks.encode(encoder_params, content)["relu4_1"]
    style_feats = networks.encode(encoder_params, style)
    if content_target == "adain":
        return metrics.adain_target(content_feat, style_feats["relu4_1"]), style_feats
    return content_feat.astype(jnp.promote_types(content_feat.dtype, jnp.float32)), style_feats


def gatys_loss(encoder_params: Any, image: jax.Array, content_target: jax.Array,
               style_feats: Mapping[str, jax.Array], *, style_loss: str = "gram",
               content_weight: float | jax.Array = 1.0,
               style_weight: float | jax.Array = 10.0) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``(loss, {"loss", "content_loss", "style_loss"})`` of NHWC ``image`` (means over the batch).

    ``content_target`` and ``style_feats`` come from `targets`. Differentiable in ``image``.
    """
    if style_loss not in STYLE_LOSSES:
        raise ValueError(f"style_loss must be one of {STYLE_LOSSES}, got {style_loss!r}")
    feats = networks.encode(encoder_params, image)
    loss_c = losses.content_loss(feats["relu4_1"], content_target)
    if style_loss == "gram":
        loss_s = metrics.gram_style_loss(feats, style_feats)
    else:
        loss_s = losses.style_loss(feats, style_feats)
    loss = content_weight * loss_c + style_weight * loss_s
    return loss, {"loss": loss, "content_loss": loss_c, "style_loss": loss_s}


def _optimizer(name: str, learning_rate, memory_size: int) -> optax.GradientTransformationExtraArgs:
    if name == "lbfgs":
        # learning_rate None: the step length is the zoom line search's (strong Wolfe conditions).
        return optax.lbfgs(memory_size=memory_size)
    if name == "adam":
        return optax.adam(learning_rate)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def _run(step, z0, state0, iterations: int, components):
    """``iterations`` optimiser steps from ``z0`` -> (last z, curve).

    ``step(z, state)`` returns the next z and state and the losses at the z it started from; with
    ``components`` (the losses of a z) the curve is those losses for every iterate, the last one's
    added after the loop ((iterations + 1) entries), else None.
    """
    def body(carry, _):
        z, state, losses = step(*carry)
        return (z, state), (losses if components is not None else None)

    (z, _), curve = jax.lax.scan(body, (z0, state0), length=iterations)
    if components is None:
        return z, None
    return z, jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), curve, components(z))


@functools.partial(jax.jit, static_argnames=("iterations", "optimizer", "init", "style_loss", "content_target",
                                             "memory_size", "record_curve"))
def gatys(encoder_params: Any, content: jax.Array, style: jax.Array, *, iterations: int = 100,
          optimizer: str = "lbfgs", init: str = "content", style_loss: str = "gram",
          content_target: str = "content", content_weight: float | jax.Array = 1.0,
          style_weight: float | jax.Array = 10.0, learning_rate: float | jax.Array = 0.05, memory_size: int = 10,
          seed: int | jax.Array = 0, record_curve: bool = True) -> tuple[jax.Array, dict[str, jax.Array] | None]:
    """Gatys et al. for N (content, style) pairs -> ``(images, curves)``.

    Args:
      encoder_params: ``weights["encoder"]``.
      content: (N, H, W, 3) in [0, 1]; style: (N, Hs, Ws, 3) in [0, 1], one per content image.
      iterations: optimiser steps (an L-BFGS step includes its line search).
      optimizer: ``"lbfgs"`` (`optax.lbfgs`, zoom line search) or ``"adam"`` (``learning_rate``,
        a step size on the logit scale).
      init: ``"content"`` or ``"noise"`` (uniform; pair i uses ``fold_in(key(seed), i)``, or
        ``key(seed[i])`` when ``seed`` has one entry per pair).
      style_loss: ``"gram"`` (Gatys) or ``"meanstd"`` (the port's, the paper's Figure 3).
      content_target: ``"content"`` (f(c) at relu4_1) or ``"adain"`` (the AdaIN target).
      content_weight, style_weight: the weights of the two terms (traced: changing them does not recompile).
      record_curve: also return the losses at every iterate (costs one forward pass per L-BFGS step).

    Returns:
      images (N, H, W, 3) in [0, 1], and ``{"loss", "content_loss", "style_loss"}`` each of shape
      (N, iterations + 1): the values at the initial image and after every step (``None`` without
      ``record_curve``).
    """
    if content.ndim != 4 or style.ndim != 4 or content.shape[0] != style.shape[0]:
        raise ValueError(f"need (N, H, W, 3) content and style with the same N, got {content.shape} and {style.shape}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {init!r}")
    opt = _optimizer(optimizer, learning_rate, memory_size)
    if jnp.ndim(seed) == 0:
        keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(seed), i))(jnp.arange(content.shape[0]))
    else:  # one seed per pair: a pair gets the same noise in any batch
        keys = jax.vmap(jax.random.key)(jnp.asarray(seed))

    def one_pair(c, s, key):
        c, s = c[None], s[None]
        target, style_feats = targets(encoder_params, c, s, content_target)

        def objective(z):
            return gatys_loss(encoder_params, jax.nn.sigmoid(z), target, style_feats, style_loss=style_loss,
                              content_weight=content_weight, style_weight=style_weight)

        def value(z):
            return objective(z)[0]

        def components(z):
            return objective(z)[1]

        x0 = c if init == "content" else jax.random.uniform(key, c.shape, jnp.float32)
        z0 = jax.scipy.special.logit(jnp.clip(x0.astype(jnp.float32), _EPS, 1.0 - _EPS))

        if optimizer == "lbfgs":
            value_and_grad = optax.value_and_grad_from_state(value)

            def step(z, state):  # -> new z, new state, the losses at z
                loss, grad = value_and_grad(z, state=state)
                updates, state = opt.update(grad, state, z, value=loss, grad=grad, value_fn=value)
                return optax.apply_updates(z, updates), state, (components(z) if record_curve else None)
        else:
            def step(z, state):
                (_, aux), grad = jax.value_and_grad(objective, has_aux=True)(z)  # the losses at z, for free
                updates, state = opt.update(grad, state, z)
                return optax.apply_updates(z, updates), state, aux

        z, curve = _run(step, z0, opt.init(z0), iterations, components if record_curve else None)
        return jax.nn.sigmoid(z)[0], curve

    return jax.vmap(one_pair)(content, style, keys)
