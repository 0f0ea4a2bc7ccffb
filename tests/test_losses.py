"""adain_jax.losses against the independent PyTorch reference (tests/torch_reference.py).

Parity target: loss, content loss, style loss and every decoder gradient equal the reference's to
1e-5 relative (max |diff| / max |reference| per tensor), both sides in float32, on the same weights
(official layout, converted) and images.

Why these seeds: a float32 gradient is only reproducible to 1e-5 when no ReLU pre-activation lies
within rounding distance of 0. If one does, either framework may round it to the other side of 0
and route (or block) the gradient through that unit, and that framework's gradient then differs from
the float64 truth by 1e-4..1e-3 - the reference's own float32 result included (measured over seeds
0..7 at 32x32: seeds 0, 1, 3, 4, 6 have such a flip on one side or both; seeds 2, 5, 7 none). The test
therefore first checks that the case is well-conditioned - the float32 reference equals the float64
reference to 1e-5 - and then asks for 1e-5 between JAX and the float32 reference.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

try:
    import torch_reference as ref
except ImportError:
    from tests import torch_reference as ref

from adain_jax.model import architecture, losses, ops
from convert.torch_layout import weights_from_torch

RTOL = 1e-5


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@functools.lru_cache(maxsize=None)
def _loss_and_grad():
    """One compiled program for every test here (weights are traced arguments, not constants)."""

    def f(decoder, encoder, content, style, content_weight, style_weight):
        return losses.adain_loss(decoder, encoder, content, style, content_weight=content_weight,
                                 style_weight=style_weight)

    return jax.jit(jax.value_and_grad(f, has_aux=True))


def _case(seed, size=32, batch=2):
    vgg_sd, dec_sd = ref.official_state_dicts(seed)
    weights = weights_from_torch("vgg", {k: v.numpy() for k, v in vgg_sd.items()},
                                 "decoder", {k: v.numpy() for k, v in dec_sd.items()})
    content = ref.make_images(seed + 1, batch, size, size)
    style = ref.make_images(seed + 2, batch, size, size)
    return vgg_sd, dec_sd, weights, content, style


def _jax_grads_by_torch_key(grads) -> dict[str, np.ndarray]:
    out = {}
    for spec in architecture.DECODER:
        out[f"{spec.torch_index}.weight"] = np.asarray(grads[spec.name]["kernel"]).transpose(3, 2, 0, 1)
        out[f"{spec.torch_index}.bias"] = np.asarray(grads[spec.name]["bias"])
    return out


@pytest.mark.parametrize("seed", [2, 5])
def test_loss_and_decoder_grads_match_pytorch_reference(seed):
    vgg_sd, dec_sd, weights, content, style = _case(seed)
    loss, loss_c, loss_s, grads = ref.reference_loss_and_grads(vgg_sd, dec_sd, content, style)
    loss64, _, _, grads64 = ref.reference_loss_and_grads(vgg_sd, dec_sd, content, style, dtype=torch.float64)
    floor = max(_rel(grads[k], grads64[k]) for k in grads64)
    assert floor < RTOL, f"reference not well-conditioned in float32 for seed {seed} ({floor:.1e})"

    (j_loss, aux), j_grads = _loss_and_grad()(weights["decoder"], weights["encoder"], content, style, 1.0, 10.0)
    assert _rel(j_loss, loss) < RTOL
    assert _rel(aux["content_loss"], loss_c) < RTOL
    assert _rel(aux["style_loss"], loss_s) < RTOL
    j_grads = _jax_grads_by_torch_key(j_grads)
    assert set(j_grads) == set(grads)
    diffs = {k: _rel(j_grads[k], grads[k]) for k in grads}
    worst = max(diffs, key=diffs.get)
    print(f"seed {seed}: loss rel {_rel(j_loss, loss):.1e}, worst grad {worst} rel {diffs[worst]:.1e} "
          f"(reference float32 vs float64: {floor:.1e})")
    assert diffs[worst] < RTOL, diffs


def test_loss_is_weighted_sum_and_weights_scale_it():
    _, _, weights, content, style = _case(5)
    (base, aux), grads = _loss_and_grad()(weights["decoder"], weights["encoder"], content, style, 1.0, 10.0)
    np.testing.assert_allclose(base, aux["content_loss"] + 10.0 * aux["style_loss"], rtol=1e-6)
    (other, aux2), _ = _loss_and_grad()(weights["decoder"], weights["encoder"], content, style, 2.0, 3.0)
    np.testing.assert_allclose(other, 2.0 * aux["content_loss"] + 3.0 * aux["style_loss"], rtol=1e-6)
    np.testing.assert_allclose(aux2["style_loss"], aux["style_loss"], rtol=1e-6)
    assert set(grads) == {s.name for s in architecture.DECODER}
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def test_component_losses_on_known_values():
    rng = np.random.default_rng(0)
    feats = {name: jnp.asarray(rng.standard_normal((2, 4, 4, 3)), jnp.float32) for name in architecture.FEATURE_LAYERS}
    assert float(losses.style_loss(feats, feats)) == 0.0
    assert float(losses.content_loss(feats["relu4_1"], feats["relu4_1"])) == 0.0
    # A constant shift moves only the means: style loss = number of layers * shift**2.
    shifted = {k: v + 0.5 for k, v in feats.items()}
    np.testing.assert_allclose(losses.style_loss(shifted, feats), 4 * 0.25, rtol=1e-5)
    # Scaling by 2 doubles the stds (up to the 1e-5 inside the square root) and the means.
    scaled = {k: 2 * v for k, v in feats.items()}
    expected = 0.0
    for k in feats:
        m, s = ops.moments(feats[k])
        m2, s2 = ops.moments(scaled[k])
        expected += float(jnp.mean((m2 - m) ** 2) + jnp.mean((s2 - s) ** 2))
    np.testing.assert_allclose(losses.style_loss(scaled, feats), expected, rtol=1e-5)
    np.testing.assert_allclose(losses.mse(jnp.ones(4), jnp.zeros(4)), 1.0)
