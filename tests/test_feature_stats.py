"""adain_jax.model.feature_stats: MixStyle, DSU and EFDMix against hand-computed cases, their random
wrappers by the properties the papers define, the Flax modules' training flag, and jit/vmap/sharding.

The cores take their random draws as arguments, so the hand cases fix the partner and lambda; the
random wrappers are checked by what must hold for any draw (a convex mix with some partner, noise of
the batch's spread), never against numbers taken from the code.
"""

from __future__ import annotations

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import run_on_devices

from adain_jax.model import feature_stats as fs

# Two samples, one channel, a 1x2 "image": sample 0 = [0, 2] (mean 1, unbiased var 2),
# sample 1 = [10, 14] (mean 12, unbiased var 8).
PAIR = np.array([[0.0, 2.0], [10.0, 14.0]], np.float32).reshape(2, 1, 2, 1)


def np_moments(x, eps):
    """Per-sample, per-channel mean and sqrt(unbiased variance + eps) of NHWC x, in float64."""
    x = np.asarray(x, np.float64)
    flat = x.reshape(x.shape[0], -1, x.shape[-1])
    return flat.mean(1), np.sqrt(flat.var(1, ddof=1) + eps)


# ------------------------------------------------------------------ hand-computed cores


def test_mixstyle_core_by_hand():
    out = np.asarray(fs.mix_moments(jnp.asarray(PAIR), jnp.array([1, 0]), jnp.array([0.5, 1.0]), eps=0.0))
    # sample 0: normalised [-1/sqrt2, 1/sqrt2]; mixed mean 0.5*1 + 0.5*12 = 6.5, mixed std
    # 0.5*sqrt2 + 0.5*sqrt8 = 1.5*sqrt2 -> [5, 8]. sample 1 keeps its own moments (lambda 1).
    np.testing.assert_allclose(out.reshape(2, 2), [[5.0, 8.0], [10.0, 14.0]], rtol=1e-6)


def test_mixstyle_core_matches_the_papers_formula_on_random_features():
    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 3.0, (4, 5, 6, 7)).astype(np.float32)
    perm, lmda = np.array([2, 0, 3, 1]), np.array([0.1, 0.9, 0.5, 0.0])
    mu, sig = np_moments(x, 1e-6)
    mu_mix = lmda[:, None] * mu + (1 - lmda[:, None]) * mu[perm]
    sig_mix = lmda[:, None] * sig + (1 - lmda[:, None]) * sig[perm]
    expected = (x - mu[:, None, None]) / sig[:, None, None] * sig_mix[:, None, None] + mu_mix[:, None, None]
    out = fs.mix_moments(jnp.asarray(x), jnp.asarray(perm), jnp.asarray(lmda, jnp.float32), eps=1e-6)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_mixstyle_statistics_are_detached():
    """With mu and sigma detached, d out / d x is sigma_mix / sigma per channel (no path through the moments)."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 4, 4, 2)).astype(np.float32)
    perm, lmda = jnp.array([1, 2, 0]), jnp.array([0.3, 0.6, 0.2])
    grad = jax.grad(lambda v: fs.mix_moments(v, perm, lmda).sum())(jnp.asarray(x))
    _, sig = np_moments(x, 1e-6)
    lm = np.asarray(lmda, np.float64)[:, None]
    ratio = (lm * sig + (1 - lm) * sig[np.asarray(perm)]) / sig
    np.testing.assert_allclose(grad, np.broadcast_to(ratio[:, None, None, :], x.shape), rtol=1e-5)


def test_dsu_core_by_hand():
    out = np.asarray(fs.perturb_moments(jnp.asarray(PAIR), jnp.array([[1.0], [0.0]]), jnp.array([[0.0], [-1.0]]),
                                        eps=0.0)).reshape(2, 2)
    # batch std of the means (1, 12): sqrt(60.5); of the stds (sqrt2, 2 sqrt2): 1.
    # sample 0: new mean 1 + sqrt(60.5), std sqrt2 -> normalised [-1, 1] / sqrt2 * sqrt2.
    # sample 1: new mean 12, new std 2 sqrt2 - 1 -> 12 -+ (2 sqrt2 - 1) / sqrt2.
    m0 = 1 + np.sqrt(60.5)
    d1 = (2 * np.sqrt(2) - 1) / np.sqrt(2)
    np.testing.assert_allclose(out, [[m0 - 1, m0 + 1], [12 - d1, 12 + d1]], rtol=1e-6)


def test_efdm_core_by_hand():
    x = np.array([[4, 1, 3, 2], [10, 40, 20, 30]], np.float32).reshape(2, 2, 2, 1)
    full = np.asarray(fs.match_sorted(jnp.asarray(x), jnp.array([1, 0]), jnp.array([0.0, 0.0]))).reshape(2, 4)
    # each value takes the value of the same rank in the other sample
    np.testing.assert_array_equal(full, [[40, 10, 30, 20], [1, 4, 2, 3]])
    part = np.asarray(fs.match_sorted(jnp.asarray(x), jnp.array([1, 0]), jnp.array([0.25, 1.0]))).reshape(2, 4)
    np.testing.assert_allclose(part, [0.25 * np.array([4, 1, 3, 2]) + 0.75 * np.array([40, 10, 30, 20]),
                                      [10, 40, 20, 30]], rtol=1e-6)


def test_efdm_gradient_reaches_the_input_and_the_partner():
    """As the authors write it, x + (y_sorted[rank x] - stop_grad(x)) (1 - lambda): d/dx = 1 on the
    sample itself, and (1 - lambda) of each output flows to the partner's value of the same rank."""
    x = jnp.asarray(np.array([[4, 1, 3, 2], [10, 40, 20, 30]], np.float32).reshape(2, 2, 2, 1))
    weights = jnp.asarray(np.array([[1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0]], np.float32).reshape(2, 2, 2, 1))
    grad = jax.grad(lambda v: (fs.match_sorted(v, jnp.array([1, 0]), jnp.array([0.25, 0.5])) * weights).sum())(x)
    grad = np.asarray(grad).reshape(2, 4)
    np.testing.assert_allclose(grad[0], [1.0, 2.0, 3.0, 4.0])
    # sample 0's ranks [3, 0, 2, 1] take sample 1's values of ranks 3, 0, 2, 1 at positions 1, 0, 3, 2.
    np.testing.assert_allclose(grad[1], 0.75 * np.array([2.0, 1.0, 4.0, 3.0]))


# ------------------------------------------------------------------ partners


def test_partners_random_is_a_permutation_and_crossdomain_halves_swap():
    for seed in range(5):
        perm = np.asarray(fs.partners(jax.random.key(seed), 8, "random"))
        assert sorted(perm) == list(range(8))
        cross = np.asarray(fs.partners(jax.random.key(seed), 8, "crossdomain"))
        assert sorted(cross) == list(range(8))
        assert (cross[:4] >= 4).all() and (cross[4:] < 4).all()
    with pytest.raises(ValueError, match="two equal halves"):
        fs.partners(jax.random.key(0), 7, "crossdomain")
    with pytest.raises(ValueError, match="mix must be one of"):
        fs.partners(jax.random.key(0), 4, "shuffle")


def test_partners_crossdomain_with_labels_only_takes_other_domains():
    domains = jnp.array([0, 0, 0, 1, 1, 2, 2, 2, 2])
    seen = set()
    for seed in range(60):
        partner = np.asarray(fs.partners(jax.random.key(seed), 9, "crossdomain", domains))
        assert (np.asarray(domains)[partner] != np.asarray(domains)).all()
        seen.update(zip(range(9), partner.tolist(), strict=True))
    # every cross-domain pair turns up: the choice is uniform among the other domains' samples
    d = np.asarray(domains)
    assert seen == {(i, j) for i in range(9) for j in range(9) if d[i] != d[j]}
    # a sample with no other domain in the batch keeps its own statistics
    alone = np.asarray(fs.partners(jax.random.key(0), 3, "crossdomain", jnp.array([5, 5, 5])))
    np.testing.assert_array_equal(alone, [0, 1, 2])


# ------------------------------------------------------------------ the random wrappers

# Jitted once each and called with one feature shape, so the tests share compiled programs (sampling
# Beta(0.1, 0.1) alone compiles for seconds on a CPU).
MIXSTYLE = jax.jit(fs.mixstyle, static_argnames=("mix",))
DSU = jax.jit(fs.dsu)
EFDMIX = jax.jit(fs.efdmix, static_argnames=("mix",))


def features(seed=0, shape=(6, 5, 5, 8)):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 3.0, (shape[0], 1, 1, shape[-1]))
    shift = rng.uniform(-2.0, 2.0, (shape[0], 1, 1, shape[-1]))
    return jnp.asarray(rng.normal(size=shape) * scale + shift, jnp.float32)


def test_mixstyle_mixes_each_sample_with_one_partner_by_one_lambda():
    x = features()
    mu, sig = np_moments(x, 1e-6)
    out = MIXSTYLE(jax.random.key(3), x, p=1.0, alpha=0.3)
    o_mu, o_sig = np_moments(out, 1e-6)
    for i in range(x.shape[0]):
        fits = []
        for j in range(x.shape[0]):
            if j == i:
                continue
            lm = np.mean((o_mu[i] - mu[j]) / (mu[i] - mu[j]))  # from the means, then checked on all
            ok = (-1e-3 <= lm <= 1 + 1e-3 and np.allclose(o_mu[i], lm * mu[i] + (1 - lm) * mu[j], atol=1e-3)
                  and np.allclose(o_sig[i], lm * sig[i] + (1 - lm) * sig[j], atol=1e-3))
            fits.append(ok)
        # a permutation may map i to itself (then out == x); otherwise exactly one partner fits
        assert sum(fits) == 1 or np.allclose(out[i], x[i], atol=1e-4), i


def test_probability_p_is_per_batch_and_zero_is_identity():
    x = features(1)
    for name, layer in (("mixstyle", MIXSTYLE), ("dsu", DSU), ("efdmix", EFDMIX)):
        np.testing.assert_array_equal(layer(jax.random.key(0), x, p=0.0), x)
        applied = []
        for seed in range(200):
            out = np.asarray(layer(jax.random.key(seed), x, p=0.5))
            changed = ~np.isclose(out, np.asarray(x), atol=1e-6).all(axis=(1, 2, 3))
            if name == "dsu":  # noise moves every sample, so one coin for the batch shows as all or none
                assert changed.all() or not changed.any()
            # (a mixing weight from Beta(0.1, 0.1) is often within 1e-6 of 1, leaving a sample as it was)
            applied.append(changed.any())
        # 200 fair coins: 100 +- 3.5 standard deviations
        assert 65 <= sum(applied) <= 135, sum(applied)


def test_dsu_keeps_the_normalised_features_and_draws_noise_of_the_batch_spread():
    x = features(2, (8, 4, 4, 256))
    mu, sig = np_moments(x, 1e-6)
    out = DSU(jax.random.key(1), x, p=1.0)
    o_mu, o_sig = np_moments(out, 0.0)  # exact: a drawn std near 0 would otherwise meet eps
    normed = (np.asarray(x) - mu[:, None, None]) / sig[:, None, None]
    o_normed = (np.asarray(out) - o_mu[:, None, None]) / o_sig[:, None, None]
    # The drawn std is not clamped (nor in the authors' code): where it came out negative, the
    # channel is flipped and its measured std is the drawn one's magnitude.
    sign = np.sign(np.sum(o_normed * normed, axis=(1, 2)))
    np.testing.assert_allclose(o_normed, sign[:, None, None] * normed, atol=2e-3)
    z_mu = (o_mu - mu) / np.sqrt(mu.var(0, ddof=1) + 1e-6)
    z_sig = (sign * o_sig - sig) / np.sqrt(sig.var(0, ddof=1) + 1e-6)
    for z in (z_mu, z_sig):  # 2,048 standard normal draws each
        assert abs(z.mean()) < 0.1 and 0.9 < z.std() < 1.1, (z.mean(), z.std())


def test_efdmix_keeps_ranks_and_mixes_sorted_values_with_one_partner():
    x = features(3)
    n, h, w, c = x.shape
    out = np.asarray(EFDMIX(jax.random.key(5), x, p=1.0, alpha=0.5))
    flat, oflat = np.asarray(x).reshape(n, h * w, c), out.reshape(n, h * w, c)
    srt = np.sort(flat, axis=1)
    for i in range(n):
        np.testing.assert_array_equal(np.argsort(oflat[i], 0), np.argsort(flat[i], 0))  # order kept
        fits = []
        for j in range(n):
            d = srt[i] - srt[j]
            lm = 1 - np.sum((np.sort(oflat[i], 0) - srt[i]) * -d) / max(np.sum(d * d), 1e-12)
            fits.append(np.allclose(np.sort(oflat[i], 0), lm * srt[i] + (1 - lm) * srt[j], atol=1e-4)
                        and -1e-4 <= lm <= 1 + 1e-4 and j != i)
        assert sum(fits) == 1 or np.allclose(oflat[i], flat[i], atol=1e-5), i


def test_beta_mixing_weights_at_the_papers_alpha_are_finite():
    x = features(4)
    for seed in range(50):
        assert np.isfinite(np.asarray(MIXSTYLE(jax.random.key(seed), x, p=1.0, alpha=0.1))).all()
        assert np.isfinite(np.asarray(EFDMIX(jax.random.key(seed), x, p=1.0, alpha=0.1))).all()


# ------------------------------------------------------------------ Flax modules


@pytest.mark.parametrize("cls", [fs.MixStyle, fs.DSU, fs.EFDMix])
def test_modules_are_the_identity_unless_training(cls):
    x = features(5)
    layer = cls(p=1.0)
    variables = layer.init(jax.random.key(0), x, train=False)
    assert variables == {} or not jax.tree.leaves(variables)  # no parameters
    np.testing.assert_array_equal(layer.apply(variables, x, train=False), x)
    a = layer.apply(variables, x, train=True, rngs={"augment": jax.random.key(1)})
    b = layer.apply(variables, x, train=True, rngs={"augment": jax.random.key(1)})
    c = layer.apply(variables, x, train=True, rngs={"augment": jax.random.key(2)})
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, x) and not np.allclose(a, c)
    # the flag as an attribute, as Flax's Dropout takes `deterministic`
    np.testing.assert_array_equal(cls(p=1.0, train=False).apply(variables, x), x)
    with pytest.raises(ValueError):
        layer.apply(variables, x)  # neither attribute nor argument: refused, not guessed


def test_module_defaults_are_the_papers():
    assert (fs.MixStyle.p, fs.MixStyle.alpha, fs.MixStyle.eps, fs.MixStyle.mix) == (0.5, 0.1, 1e-6, "random")
    assert (fs.DSU.p, fs.DSU.eps) == (0.5, 1e-6)
    assert (fs.EFDMix.p, fs.EFDMix.alpha, fs.EFDMix.mix) == (0.5, 0.1, "random")


def test_modules_inside_a_backbone_under_jit_and_vmap():
    import flax.linen as nn

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Conv(8, (3, 3))(x)
            x = fs.MixStyle(mix="crossdomain")(x, train=train)
            x = fs.DSU()(x, train=train)
            x = fs.EFDMix()(x, train=train)
            return nn.Dense(2)(x.mean(axis=(1, 2)))

    x = features(6, (6, 5, 5, 3))
    net = Net()
    params = net.init(jax.random.key(0), x, train=False)

    @jax.jit
    def loss(params, x, key):
        return jnp.sum(net.apply(params, x, train=True, rngs={"augment": key}) ** 2)

    grads = jax.grad(loss)(params, x, jax.random.key(1))
    assert all(np.isfinite(np.asarray(g)).all() for g in jax.tree.leaves(grads))
    # vmap over independent batches equals the calls one by one
    keys = jax.random.split(jax.random.key(7), 3)
    xs = jnp.stack([features(s) for s in range(3)])
    for fn in (lambda k, v: MIXSTYLE(k, v, p=1.0), lambda k, v: DSU(k, v, p=1.0), lambda k, v: EFDMIX(k, v, p=1.0)):
        mapped = jax.vmap(fn)(keys, xs)
        for i in range(3):
            np.testing.assert_allclose(mapped[i], fn(keys[i], xs[i]), rtol=1e-5, atol=1e-5)


_SHARDED = textwrap.dedent("""
    import re
    import jax, jax.numpy as jnp, numpy as np
    from adain_jax import parallel
    from adain_jax.model import feature_stats as fs
    assert len(jax.devices()) == 4
    mesh = parallel.make_mesh()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6, 6, 16)).astype(np.float32) * rng.uniform(0.5, 2, (8, 1, 1, 16))
    xs = jax.device_put(x, parallel.batch_sharded(mesh))
    domains = jax.device_put(np.array([0, 1] * 4), parallel.batch_sharded(mesh))
    for name, fn in [("mixstyle", lambda k, v, d: fs.mixstyle(k, v, p=1.0, mix="crossdomain", domains=d)),
                     ("dsu", lambda k, v, d: fs.dsu(k, v, p=1.0)),
                     ("efdmix", lambda k, v, d: fs.efdmix(k, v, p=1.0))]:
        f = jax.jit(fn)
        key = jax.random.key(3)
        out = f(key, xs, domains)
        one = jax.jit(fn)(key, jnp.asarray(x), jnp.array([0, 1] * 4))
        assert out.sharding.is_equivalent_to(xs.sharding, 4), (name, out.sharding)
        np.testing.assert_allclose(np.asarray(out), np.asarray(one), rtol=1e-5, atol=1e-5)
        if name != "efdmix":  # EFDMix takes its partner's sorted values: the feature map must move
            hlo = f.lower(key, xs, domains).compile().as_text()
            # an instruction's result shape(s), then a collective's name: "%x = f32[8,16]{1,0} all-gather(...)"
            found = [re.search(r"=\\s*(.*?)\\s(all-gather|all-to-all|collective-permute)(-start)?\\(", line)
                     for line in hlo.splitlines()]
            moved = [m.group(0) for m in found if m and ("6,6,16]" in m.group(1) or "36,16]" in m.group(1))]
            assert not moved, (name, moved)
        print(name, "ok")
""")


def test_layers_on_a_batch_sharded_mesh_keep_the_sharding_and_equal_one_device():
    proc = run_on_devices(_SHARDED, 4)
    assert proc.stdout.split() == ["mixstyle", "ok", "dsu", "ok", "efdmix", "ok"]
