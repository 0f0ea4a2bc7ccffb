"""adain_jax.model.losses against the independent PyTorch reference (tests/torch_reference.py).

Ground truth is the reference computed in float64; the library runs in float32 and must agree with
it to within what float32 rounding can do to the case at hand. That bound is derived per case, in
float64, never from how a float32 computation happens to round on the machine running the tests:

* `torch_reference.float32_rounding_noise` perturbs every convolution output of a float64 run by
  eps32 * (|b| + sum |w| |x|) * N(0, 1) - a pessimistic model of float32 rounding (measured CPU
  kernels err by 0.2-0.6 of that, RMS) with seeded noise, so the same on every machine;
* an ensemble of such runs shows how far float32 results can drift from the float64 truth. Where a
  ReLU input or a max-pool tie lies within rounding distance of its decision, float32 may route the
  gradient the other way: one such flip moves gradients by 1e-4..1e-3 of their range, on any
  framework and any CPU (measured: the float32 *reference* itself differs from float64 by up to
  9e-3 on such cases, and which cases flip differs between Intel and AMD CPUs);
* a case is used only if the ensemble shows no flip (spread <= MAX_SPREAD, a float64 criterion),
  and the library must then be within SAFETY times that spread of the float64 truth.

The smooth float32 error of the library is about 5e-6 here (loss and gradients), the ensemble's
spread on the chosen cases 1e-5..2e-4, so a wrong formula (1e-2 and up) or a silent downcast to
bfloat16 (about 1e-2) fails, and rounding differences between CPUs do not.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch_reference as ref

from adain_jax.model import architecture, losses, ops
from convert.torch_layout import weights_from_torch

SIZE, BATCH = 16, 1  # few units near a ReLU decision, so some seeds have none (see MAX_SPREAD)
NOISE_DRAWS = 4
MAX_SPREAD = 2e-4  # a case whose float64 rounding ensemble spreads further is ill-conditioned
SAFETY = 3.0
# Seeds whose ensemble shows no flip (16x16, batch 1; spread over 4 draws in parentheses):
# 0 (4.4e-5), 10 (1.5e-4). Seeds 1-9 and 11 flip in at least one draw (7.6e-4 .. 1.3e-2).
SEEDS = [0, pytest.param(10, marks=pytest.mark.slow)]


def _rel(a, b) -> float:
    """max |a - b| / max |b|: error relative to the tensor's range."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


@functools.lru_cache(maxsize=None)
def _loss_and_grad():
    """One compiled program for every test here (weights are traced arguments, not constants)."""

    def f(decoder, encoder, content, style, content_weight, style_weight):
        return losses.adain_loss(decoder, encoder, content, style, content_weight=content_weight,
                                 style_weight=style_weight)

    return jax.jit(jax.value_and_grad(f, has_aux=True))


def _case(seed, size=SIZE, batch=BATCH):
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


def _errors(result, truth) -> dict[str, float]:
    """Relative errors of (loss, loss_c, loss_s, grads) against the float64 truth, by name."""
    loss, loss_c, loss_s, grads = result
    t_loss, t_c, t_s, t_grads = truth
    out = {"loss": _rel(loss, t_loss), "content_loss": _rel(loss_c, t_c), "style_loss": _rel(loss_s, t_s)}
    out.update({k: _rel(grads[k], t_grads[k]) for k in t_grads})
    return out


@pytest.mark.parametrize("seed", SEEDS)
def test_loss_and_decoder_grads_match_the_float64_reference_within_float32_rounding(seed):
    vgg_sd, dec_sd, weights, content, style = _case(seed)
    truth = ref.reference_loss_and_grads(vgg_sd, dec_sd, content, style, dtype=torch.float64)
    ensemble = ref.reference_loss_and_grads(vgg_sd, dec_sd, content, style, dtype=torch.float64,
                                            rounding_noise_seeds=range(NOISE_DRAWS))
    spread = {}
    for member in ensemble:
        for name, err in _errors(member, truth).items():
            spread[name] = max(spread.get(name, 0.0), err)
    assert max(spread.values()) <= MAX_SPREAD, (
        f"seed {seed} is ill-conditioned in float32 (its float64 rounding ensemble spreads to "
        f"{max(spread.values()):.1e}): choose another seed")

    (loss, aux), grads = _loss_and_grad()(weights["decoder"], weights["encoder"], content, style, 1.0, 10.0)
    grads = _jax_grads_by_torch_key(grads)
    assert set(grads) == set(truth[3])
    errors = _errors((loss, aux["content_loss"], aux["style_loss"], grads), truth)
    reference32 = _errors(ref.reference_loss_and_grads(vgg_sd, dec_sd, content, style), truth)
    worst = max(errors, key=lambda k: errors[k] / spread[k])
    print(f"seed {seed}: worst {worst}: JAX {errors[worst]:.1e}, bound {SAFETY * spread[worst]:.1e}; "
          f"largest errors: JAX {max(errors.values()):.1e}, float32 reference {max(reference32.values()):.1e}, "
          f"ensemble {max(spread.values()):.1e}")
    bad = {k: f"{errors[k]:.1e} > {SAFETY * spread[k]:.1e}" for k in errors if errors[k] > SAFETY * spread[k]}
    assert not bad, bad


def test_loss_is_weighted_sum_and_weights_scale_it():
    _, _, weights, content, style = _case(0)
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
