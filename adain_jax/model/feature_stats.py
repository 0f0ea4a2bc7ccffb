"""Feature-statistics augmentation layers for a user's own backbone: MixStyle, DSU and EFDMix.

Each is a pure function of an explicit PRNG key and NHWC features (`mixstyle`, `dsu`, `efdmix`),
built on a deterministic core that takes the random draws as arguments (`mix_moments`,
`perturb_moments`, `match_sorted`), and a Flax linen module (`MixStyle`, `DSU`, `EFDMix`) that draws
its key from the ``"augment"`` RNG stream and is the identity unless ``train=True``. Shapes are static
and the "apply with probability p" coin is a select, never a Python branch, so they run unchanged under
``jax.jit``, ``jax.vmap`` and a batch-sharded mesh (where only the (N, C) statistics cross devices).

The defaults and formulas follow the authors' released PyTorch code, which the papers' equations
describe:

- MixStyle (Zhou et al., "Domain Generalization with MixStyle", ICLR 2021; KaiyangZhou/mixstyle-release):
  p=0.5, alpha=0.1, eps=1e-6; per-channel mean and std (unbiased variance + eps), both detached;
  ``lambda ~ Beta(alpha, alpha)`` per sample; ``random`` (a shuffled batch) or ``crossdomain`` mixing.
- DSU (Li et al., "Uncertainty Modeling for Out-of-Distribution Generalization", ICLR 2022;
  lixiaotong97/DSU): p=0.5, eps=1e-6; the mean and std are each moved by Gaussian noise whose std is
  the batch's standard deviation of that statistic (unbiased, + eps inside the root). Not detached,
  and the drawn std is not clamped (a negative one flips the channel), as in that code.
- EFDMix (Zhang et al., "Exact Feature Distribution Matching for Arbitrary Style Transfer and Domain
  Generalization", CVPR 2022; YBZh/EFDM): p=0.5, alpha=0.1; each channel's values are sorted and
  replaced by ``lambda * x + (1 - lambda) * y_sorted[rank(x)]`` with y a shuffled sample, written as
  the authors do, ``x + (y_sorted[rank(x)] - stop_gradient(x)) * (1 - lambda)``, so the gradient
  reaches both x and the partner y.

``crossdomain`` without domain labels is the authors' convention: the batch is two domains' halves
(N even) and each half takes its partners from the other half, shuffled. With ``domains`` (N integer
labels) each sample takes a partner drawn uniformly among the samples of other domains (itself when
there are none), so any batch layout works.
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp

from adain_jax.model import ops

Mix = Literal["random", "crossdomain"]
MIXES: tuple[str, ...] = ("random", "crossdomain")
RNG_COLLECTION = "augment"  # the Flax RNG stream the modules draw from: rngs={"augment": key}


def check_mix(mix: str) -> None:
    if mix not in MIXES:
        raise ValueError(f"mix must be one of {', '.join(MIXES)}, got {mix!r}")


def partners(key: jax.Array, n: int, mix: str = "random", domains: jax.Array | None = None) -> jax.Array:
    """(n,) int32: the sample each sample takes its style statistics from (module docstring)."""
    check_mix(mix)
    if mix == "random":
        return jax.random.permutation(key, n).astype(jnp.int32)
    if domains is None:
        if n % 2:
            raise ValueError(f"crossdomain mixing without domain labels takes a batch of two equal halves "
                             f"(one per domain), got an odd batch of {n}")
        k1, k2 = jax.random.split(key)
        half = n // 2
        first = jax.random.permutation(k1, half) + half  # the first half mixes with the second
        second = jax.random.permutation(k2, half)
        return jnp.concatenate([first, second]).astype(jnp.int32)
    domains = jnp.asarray(domains)
    if domains.shape != (n,):
        raise ValueError(f"domains must be one label per sample, shape ({n},), got {domains.shape}")
    # A uniform choice among the other domains' samples as an argmax of random scores: static shapes,
    # no boolean indexing, and vmappable.
    other = domains[:, None] != domains[None, :]
    scores = jnp.where(other, jax.random.uniform(key, (n, n)), -1.0)
    return jnp.where(other.any(axis=1), jnp.argmax(scores, axis=1), jnp.arange(n)).astype(jnp.int32)


def _moments(x: jax.Array, eps: float) -> tuple[jax.Array, jax.Array]:
    """(N, 1, 1, C) per-channel mean and sqrt(unbiased variance + eps), as torch's ``x.var`` gives."""
    mean, std = ops.moments(x, eps=eps)
    return mean[:, None, None, :], std[:, None, None, :]


def _coin(key: jax.Array, p: float | jax.Array, out: jax.Array, x: jax.Array) -> jax.Array:
    """``out`` with probability p, else ``x``: one draw per batch, as the authors' ``random.random() > p``."""
    return jnp.where(jax.random.bernoulli(key, p), out, x)


def mix_moments(x: jax.Array, perm: jax.Array, lmda: jax.Array, eps: float = 1e-6) -> jax.Array:
    """MixStyle's core: ``x`` normalised by its own (detached) moments and given the moments
    ``lmda * own + (1 - lmda) * those of x[perm]``; ``perm`` (N,) ints, ``lmda`` (N,) in [0, 1]."""
    mu, sig = _moments(x, eps)
    mu, sig = jax.lax.stop_gradient(mu), jax.lax.stop_gradient(sig)
    lmda = lmda.reshape(-1, 1, 1, 1).astype(mu.dtype)
    mu_mix = lmda * mu + (1 - lmda) * mu[perm]
    sig_mix = lmda * sig + (1 - lmda) * sig[perm]
    return ((x - mu) / sig * sig_mix + mu_mix).astype(x.dtype)


def perturb_moments(x: jax.Array, noise_mu: jax.Array, noise_sig: jax.Array, eps: float = 1e-6) -> jax.Array:
    """DSU's core: ``noise_mu``/``noise_sig`` (N, C) standard normal draws scale the batch's
    standard deviation of the means/stds to give each sample new moments."""
    mean, std = _moments(x, eps)
    n = x.shape[0]

    def spread(s: jax.Array) -> jax.Array:  # torch's s.var(dim=0) (unbiased); 0 for a batch of one
        centred = s - jnp.mean(s, axis=0, keepdims=True)
        return jnp.sqrt(jnp.sum(jnp.square(centred), axis=0, keepdims=True) / max(n - 1, 1) + eps)

    beta = mean + noise_mu.reshape(mean.shape).astype(mean.dtype) * spread(mean)
    gamma = std + noise_sig.reshape(std.shape).astype(std.dtype) * spread(std)
    return ((x - mean) / std * gamma + beta).astype(x.dtype)


def match_sorted(x: jax.Array, perm: jax.Array, lmda: jax.Array) -> jax.Array:
    """EFDMix's core: per sample and channel, each value moves ``(1 - lmda)`` of the way to the value
    of the same rank in sample ``perm``; ``lmda`` (N,) in [0, 1]."""
    n, h, w, c = x.shape
    flat = x.reshape(n, h * w, c)
    order = jnp.argsort(flat, axis=1)
    ranks = jnp.argsort(order, axis=1)
    ordered = jnp.take_along_axis(flat, order, axis=1)
    matched = jnp.take_along_axis(ordered[perm], ranks, axis=1)
    lmda = lmda.reshape(-1, 1, 1).astype(flat.dtype)
    return (flat + (matched - jax.lax.stop_gradient(flat)) * (1 - lmda)).reshape(x.shape)


def mixstyle(key: jax.Array, x: jax.Array, *, p: float = 0.5, alpha: float = 0.1, eps: float = 1e-6,
             mix: Mix = "random", domains: jax.Array | None = None) -> jax.Array:
    """MixStyle of NHWC features with probability ``p`` per batch (module docstring for the defaults)."""
    k_coin, k_perm, k_beta = jax.random.split(key, 3)
    n = x.shape[0]
    lmda = jax.random.beta(k_beta, alpha, alpha, (n,))
    return _coin(k_coin, p, mix_moments(x, partners(k_perm, n, mix, domains), lmda, eps), x)


def dsu(key: jax.Array, x: jax.Array, *, p: float = 0.5, eps: float = 1e-6) -> jax.Array:
    """DSU of NHWC features with probability ``p`` per batch (module docstring for the defaults)."""
    k_coin, k_mu, k_sig = jax.random.split(key, 3)
    shape = (x.shape[0], x.shape[-1])
    out = perturb_moments(x, jax.random.normal(k_mu, shape), jax.random.normal(k_sig, shape), eps)
    return _coin(k_coin, p, out, x)


def efdmix(key: jax.Array, x: jax.Array, *, p: float = 0.5, alpha: float = 0.1, mix: Mix = "random",
           domains: jax.Array | None = None) -> jax.Array:
    """EFDMix of NHWC features with probability ``p`` per batch (module docstring for the defaults)."""
    k_coin, k_perm, k_beta = jax.random.split(key, 3)
    n = x.shape[0]
    lmda = jax.random.beta(k_beta, alpha, alpha, (n,))
    return _coin(k_coin, p, match_sorted(x, partners(k_perm, n, mix, domains), lmda), x)


class MixStyle(nn.Module):
    """MixStyle (Zhou et al., ICLR 2021) for NHWC features; the identity unless ``train``.

    Defaults are the paper's and its code's: ``p=0.5``, ``alpha=0.1`` (Beta(0.1, 0.1) mixing weights),
    ``eps=1e-6``, ``mix="random"``. ``train`` is an attribute or a call argument (exactly one of them);
    the key comes from the ``rng_collection`` stream (``apply(..., rngs={"augment": key})``).
    ``domains``: (N,) labels for ``mix="crossdomain"`` (without them, the batch is two domains' halves).
    """

    p: float = 0.5
    alpha: float = 0.1
    eps: float = 1e-6
    mix: Mix = "random"
    train: bool | None = None
    rng_collection: str = RNG_COLLECTION

    @nn.compact
    def __call__(self, x: jax.Array, train: bool | None = None, domains: jax.Array | None = None) -> jax.Array:
        check_mix(self.mix)
        if not nn.merge_param("train", self.train, train):
            return x
        return mixstyle(self.make_rng(self.rng_collection), x, p=self.p, alpha=self.alpha, eps=self.eps,
                        mix=self.mix, domains=domains)


class DSU(nn.Module):
    """DSU, domain shifts with uncertainty (Li et al., ICLR 2022), for NHWC features; the identity
    unless ``train``. Defaults are the paper's and its code's: ``p=0.5``, ``eps=1e-6``. ``train`` and
    the key as for `MixStyle`."""

    p: float = 0.5
    eps: float = 1e-6
    train: bool | None = None
    rng_collection: str = RNG_COLLECTION

    @nn.compact
    def __call__(self, x: jax.Array, train: bool | None = None) -> jax.Array:
        if not nn.merge_param("train", self.train, train):
            return x
        return dsu(self.make_rng(self.rng_collection), x, p=self.p, eps=self.eps)


class EFDMix(nn.Module):
    """EFDMix, exact feature distribution mixing (Zhang et al., CVPR 2022), for NHWC features; the
    identity unless ``train``. Defaults are the paper's and its code's: ``p=0.5``, ``alpha=0.1``
    (Beta(0.1, 0.1) mixing weights), ``mix="random"``. ``train``, the key and ``domains`` as for
    `MixStyle`."""

    p: float = 0.5
    alpha: float = 0.1
    mix: Mix = "random"
    train: bool | None = None
    rng_collection: str = RNG_COLLECTION

    @nn.compact
    def __call__(self, x: jax.Array, train: bool | None = None, domains: jax.Array | None = None) -> jax.Array:
        check_mix(self.mix)
        if not nn.merge_param("train", self.train, train):
            return x
        return efdmix(self.make_rng(self.rng_collection), x, p=self.p, alpha=self.alpha, mix=self.mix,
                      domains=domains)
