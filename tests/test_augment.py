"""adain_jax.augment: style_augment under jit, vmap and a batch-sharded mesh; the style sources; the
bank command.

Stylized samples are checked against `stylize_with_moments` with the style that must have been
drawn (one bank style, the other domain's moments), not against numbers from the code under test.
Random weights and 32x32 images keep it fast; every test reuses a few compiled programs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ROOT, run_on_devices, write_image

import adain_jax
from adain_jax import controls
from adain_jax.augment import GaussianStyles, InBatch, StyleBank, sources, style_augment
from adain_jax.augment import __main__ as command
from adain_jax.model import variants

N, SIZE = 4, 32


def smooth_images(seed: int, n: int = N, size: int = SIZE) -> np.ndarray:
    """Smooth random images in [0, 1] (structure for the networks to act on)."""
    rng = np.random.default_rng(seed)
    small = rng.random((n, size // 8, size // 8, 3)).astype(np.float32)
    return np.asarray(jax.image.resize(small, (n, size, size, 3), "linear"))


@pytest.fixture(scope="module")
def images():
    return smooth_images(0)


@pytest.fixture(scope="module")
def bank(random_weights):
    return StyleBank(*adain_jax.style_moments(random_weights, smooth_images(1)))


def changed(out, images) -> np.ndarray:
    """Which samples style_augment replaced."""
    return (np.asarray(out) != np.asarray(images)).any(axis=(1, 2, 3))


def reference(weights, content, mean, std, alpha=1.0):
    return np.asarray(adain_jax.stylize_with_moments(weights, content, mean, std, alpha=alpha))


# ------------------------------------------------------------------ the function itself


def test_shape_dtype_range_and_determinism_for_a_key(random_weights, images, bank):
    out = style_augment(jax.random.key(0), images, bank, weights=random_weights, p=1.0)
    assert out.shape == images.shape and out.dtype == jnp.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    again = style_augment(jax.random.key(0), images, bank, weights=random_weights, p=1.0)
    np.testing.assert_array_equal(out, again)
    other = style_augment(jax.random.key(1), images, bank, weights=random_weights, p=1.0)
    assert not np.allclose(out, other)
    assert changed(out, images).all()


def test_p_zero_and_alpha_zero_return_the_input_exactly(random_weights, images, bank):
    for key in range(3):
        for kwargs in ({"p": 0.0}, {"alpha": 0.0}, {"alpha": (0.0, 0.0)}, {"p": 1.0, "alpha": 0.0}):
            out = style_augment(jax.random.key(key), images, bank, weights=random_weights, **kwargs)
            np.testing.assert_array_equal(out, images)


def test_stylized_samples_are_stylize_with_moments_of_a_bank_style(random_weights, images, bank):
    out = np.asarray(style_augment(jax.random.key(2), images, bank, weights=random_weights, p=1.0, alpha=1.0))
    mean, std = np.asarray(bank.mean), np.asarray(bank.std)
    refs = [reference(random_weights, images, np.repeat(mean[j:j + 1], N, 0), np.repeat(std[j:j + 1], N, 0))
            for j in range(len(bank))]
    for i in range(N):
        matches = [j for j in range(len(bank)) if np.allclose(out[i], refs[j][i], atol=1e-4)]
        assert len(matches) == 1, (i, matches)


def test_each_sample_is_stylized_with_probability_p(random_weights, images, bank):
    for p, (low, high) in ((0.5, (65, 135)), (0.2, (20, 60))):
        # 200 samples: the count lies within about 3.5 standard deviations of 200 p
        count = sum(changed(style_augment(jax.random.key(k), images, bank, weights=random_weights, p=p), images).sum()
                    for k in range(50))
        assert low <= count <= high, (p, count)


def test_stylized_samples_pass_no_gradient_and_the_others_pass_theirs(random_weights, images, bank):
    key = next(jax.random.key(k) for k in range(100)
               if 0 < changed(style_augment(jax.random.key(k), images, bank, weights=random_weights), images).sum() < N)
    r = jnp.asarray(np.random.default_rng(5).normal(size=images.shape), jnp.float32)
    grad = jax.grad(lambda x: jnp.sum(style_augment(key, x, bank, weights=random_weights) * r))(jnp.asarray(images))
    picked = changed(style_augment(key, images, bank, weights=random_weights), images)
    np.testing.assert_array_equal(np.asarray(grad)[picked], 0.0)
    np.testing.assert_array_equal(np.asarray(grad)[~picked], np.asarray(r)[~picked])


def test_in_batch_crossdomain_takes_the_other_domains_moments_and_share_pairs_views(random_weights, images):
    """Domains [0, 0, 1, 1] with share=2: samples 0 and 1 take one style, the moments of sample 2 or 3;
    samples 2 and 3 one of sample 0 or 1."""
    c_mean, c_std = (np.asarray(a) for a in adain_jax.style_moments(random_weights, images))
    source = InBatch("crossdomain", jnp.array([0, 0, 1, 1]))
    for key in range(2):
        out = np.asarray(style_augment(jax.random.key(key), images, source, weights=random_weights, p=1.0,
                                       alpha=1.0, share=2))
        fits = [(j, k) for j in (2, 3) for k in (0, 1)
                if np.allclose(out, reference(random_weights, images, c_mean[[j, j, k, k]], c_std[[j, j, k, k]]),
                               atol=1e-4)]
        assert len(fits) == 1, (key, fits)


def test_reduced_resolution_stylizes_small_and_resizes_back_and_share_keeps_pairs_together(random_weights, images,
                                                                                           bank):
    one = StyleBank(bank.mean[:1], bank.std[:1])
    small = jax.image.resize(jnp.asarray(images), (N, 16, 16, 3), "linear", antialias=True)
    ref_small = adain_jax.stylize_with_moments(random_weights, small, one.mean, one.std)
    ref = np.clip(np.asarray(jax.image.resize(ref_small, (N, SIZE, SIZE, 3), "linear")), 0, 1)
    seen = set()
    for key in range(8):
        out = np.asarray(style_augment(jax.random.key(key), images, one, weights=random_weights, p=0.5, alpha=1.0,
                                       share=2, resolution=16))
        picked = changed(out, images)
        assert picked[0] == picked[1] and picked[2] == picked[3]
        np.testing.assert_allclose(out[picked], ref[picked], atol=1e-4)
        seen.add(tuple(picked))
    assert len(seen) > 1


def test_vmap_over_batches_equals_the_calls_one_by_one(random_weights, images, bank):
    keys = jax.random.split(jax.random.key(9), 2)
    stack = jnp.stack([images, smooth_images(3)])
    mapped = jax.vmap(lambda k, x: style_augment(k, x, bank, weights=random_weights, p=1.0))(keys, stack)
    for i in range(2):
        one = style_augment(keys[i], stack[i], bank, weights=random_weights, p=1.0)
        np.testing.assert_allclose(mapped[i], one, atol=1e-5)


def test_bfloat16_goes_through_the_precision_switch(random_weights, images, bank):
    f32 = np.asarray(style_augment(jax.random.key(4), images, bank, weights=random_weights, p=1.0))
    bf16 = np.asarray(style_augment(jax.random.key(4), images, bank, weights=random_weights, p=1.0,
                                    precision="bfloat16"))
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, f32)  # computed differently...
    assert np.abs(bf16 - f32).mean() < 0.02  # ...to the same stylization (same draws)


def test_refusals(random_weights, images, bank):
    with pytest.raises(controls.ControlError, match="share=3 must divide"):
        style_augment(jax.random.key(0), images, bank, weights=random_weights, share=3)
    with pytest.raises(TypeError, match="source must be"):
        style_augment(jax.random.key(0), images, (bank.mean, bank.std), weights=random_weights)
    with pytest.raises(ValueError, match="NHWC"):
        style_augment(jax.random.key(0), images[0], bank, weights=random_weights)
    with pytest.raises(ValueError, match="mix must be one of"):
        InBatch("shuffle")
    skips = dict(random_weights, variant=variants.DecoderVariant(skip="concat", skip_source="style"))
    with pytest.raises(ValueError, match="style images' features"):
        style_augment(jax.random.key(0), images, bank, weights=skips)


# ------------------------------------------------------------------ sources


def test_gaussian_styles_sample_the_fitted_distribution():
    rng = np.random.default_rng(0)
    d = sources.CHANNELS
    basis = rng.normal(size=(2 * d, 6)) * 0.3
    true_mean = np.concatenate([np.full(d, 5.0), np.full(d, 0.5)])  # means far from 0: no clipping
    v = true_mean + rng.normal(size=(400, 6)) @ basis.T + 0.05 * rng.normal(size=(400, 2 * d))
    bank = StyleBank(v[:, :d].astype(np.float32), np.exp(v[:, d:]).astype(np.float32))
    gauss = GaussianStyles.fit(bank, shrinkage=0.01)
    # the fit: the bank's mean and its covariance with 1% of the variance made isotropic
    cov = np.cov(v, rowvar=False)
    expected = 0.99 * cov + 0.01 * np.trace(cov) / (2 * d) * np.eye(2 * d)
    chol = np.asarray(gauss.chol, np.float64)
    np.testing.assert_allclose(chol @ chol.T, expected, atol=1e-3 * np.abs(expected).max())
    np.testing.assert_allclose(gauss.mean, v.mean(0), atol=1e-4)
    # samples: [mean, log std] has the fitted mean and variance
    mean, std = (np.asarray(a, np.float64) for a in gauss.draw(jax.random.key(1), 3000))
    assert mean.shape == std.shape == (3000, d) and (std > 0).all()
    s = np.concatenate([mean, np.log(std)], axis=1)
    sd = np.sqrt(np.diag(expected))
    assert np.abs((s.mean(0) - v.mean(0)) / sd).max() < 5 / np.sqrt(3000) * 1.5
    ratio = s.var(0) / np.diag(expected)
    assert ratio.min() > 0.85 and ratio.max() < 1.15, (ratio.min(), ratio.max())
    # and the correlations: the low-rank structure comes back
    top = np.argmax(np.abs(expected - np.diag(np.diag(expected))).ravel())
    i, j = np.unravel_index(top, expected.shape)
    np.testing.assert_allclose(np.corrcoef(s[:, i], s[:, j])[0, 1], expected[i, j] / sd[i] / sd[j], atol=0.07)


def test_gaussian_samples_keep_relu_means_non_negative_and_need_two_styles():
    bank = StyleBank(np.array([[0.0] * 512, [0.1] * 512], np.float32), np.ones((2, 512), np.float32))
    mean, _ = GaussianStyles.fit(bank, shrinkage=0.5).draw(jax.random.key(0), 50)
    assert float(jnp.min(mean)) == 0.0  # some draws fell below 0 and were clipped there
    with pytest.raises(ValueError, match="at least 2 styles"):
        GaussianStyles.fit(StyleBank(bank.mean[:1], bank.std[:1]))


def test_bank_save_load_round_trip_and_bad_files(tmp_path, bank):
    path = tmp_path / "sub" / "bank.npz"
    bank.save(path, names=["a.jpg", "b.png", "c.jpg", "d.jpg"])
    back = StyleBank.load(path)
    np.testing.assert_array_equal(back.mean, bank.mean)
    np.testing.assert_array_equal(back.std, bank.std)
    with np.load(path) as npz:
        assert list(npz["names"]) == ["a.jpg", "b.png", "c.jpg", "d.jpg"]
    assert [p.name for p in path.parent.iterdir()] == ["bank.npz"]  # no temporary left
    np.savez(tmp_path / "other.npz", mean=np.ones((2, 512)))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    for name, message in (("other.npz", "not an adain-jax style bank"), ("junk.npz", "not a readable style bank"),
                          ("missing.npz", "not a readable style bank")):
        with pytest.raises(sources.BankError, match=message) as e:
            StyleBank.load(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name)) and "\n" not in str(e.value)


def style_folder(tmp_path, sizes=((40, 48), (32, 32), (50, 36), (64, 40), (33, 70))):
    folder = tmp_path / "styles"
    for i, (h, w) in enumerate(sizes):
        write_image(folder / f"s{i}.png", h, w, seed=10 + i)
    return folder


def test_bank_from_folder_is_the_moments_of_the_centre_crops(tmp_path, random_weights):
    from adain_jax.io import images as image_io

    folder = style_folder(tmp_path)
    bank = StyleBank.from_folder(random_weights, folder, size=SIZE, batch_size=N)
    crops = np.stack([image_io.load_image(p, SIZE, crop=True) for p in sorted(folder.iterdir())])
    mean, std = (np.concatenate([np.asarray(a) for a in pair]) for pair in
                 zip(adain_jax.style_moments(random_weights, crops[:4]),
                     adain_jax.style_moments(random_weights, np.repeat(crops[4:], 4, 0)), strict=True))
    assert len(bank) == 5
    np.testing.assert_allclose(bank.mean, np.concatenate([mean[:4], mean[4:5]]), atol=1e-5)
    np.testing.assert_allclose(bank.std, np.concatenate([std[:4], std[4:5]]), atol=1e-5)


def test_bank_command_writes_a_bank_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    folder = style_folder(tmp_path)
    out = tmp_path / "out" / "bank.npz"
    argv = ["bank", "--styles", str(folder), "--out", str(out), "--weights", "random", "--size", str(SIZE),
            "--batch-size", str(N)]
    assert command.main(argv) == 0
    assert len(StyleBank.load(out)) == 5 and "5 styles" in capsys.readouterr().out

    empty = tmp_path / "empty"
    empty.mkdir()
    bad = tmp_path / "bad"
    bad.mkdir()
    write_image(bad / "a.png", 32, 32)
    (bad / "b.png").write_bytes(b"this is not a png")
    for styles, named in ((tmp_path / "missing", "missing"), (empty, "empty"), (bad, "b.png")):
        target = tmp_path / f"never-{named}" / "bank.npz"
        capsys.readouterr()
        code = command.main(["bank", "--styles", str(styles), "--out", str(target), "--weights", "random",
                             "--size", str(SIZE)])
        err = capsys.readouterr().err.strip().splitlines()
        errors = [line for line in err if line.startswith("error:")]
        assert code == 2 and len(errors) == 1 and named in errors[0], (named, err)
        assert not target.parent.exists() or not any(target.parent.iterdir())  # no output, no temporary


def test_bank_command_help_lists_its_options():
    proc = subprocess.run([sys.executable, "-m", "adain_jax.augment", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0
    for option in ("--styles", "--out", "--weights", "--size", "--precision"):
        assert option in proc.stdout


# ------------------------------------------------------------------ a batch-sharded mesh

_SHARDED = textwrap.dedent("""
    import re
    import jax, jax.numpy as jnp, numpy as np
    import adain_jax
    from adain_jax import parallel
    from adain_jax.augment import GaussianStyles, InBatch, StyleBank, style_augment
    assert len(jax.devices()) == 4
    mesh = parallel.make_mesh()
    w = jax.device_put(adain_jax.init_weights(0), parallel.replicated(mesh))
    rng = np.random.default_rng(0)
    images = rng.random((8, 32, 32, 3), np.float32)
    bank = StyleBank(rng.random((6, 512), np.float32) + 0.1, rng.random((6, 512), np.float32) + 0.2)
    gauss = jax.device_put(GaussianStyles.fit(bank), parallel.replicated(mesh))
    x = jax.device_put(images, parallel.batch_sharded(mesh))
    key = jax.random.key(0)
    # an instruction's result shape(s), then a collective's name: "%x = f32[8,512]{1,0} all-gather(...)"
    COLLECTIVE = re.compile(r"=\\s*(.*?)\\s(all-gather|all-to-all|collective-permute|all-reduce)(-start)?\\(")
    for name, source in (("gaussian", gauss), ("inbatch", InBatch("random"))):
        step = jax.jit(lambda k, x, s, w: style_augment(k, x, s, weights=w, p=0.5))
        out = step(key, x, source, w)
        assert out.sharding.is_equivalent_to(x.sharding, 4), (name, out.sharding)
        hlo = step.lower(key, x, source, w).compile().as_text()
        collectives = [m for m in map(COLLECTIVE.search, hlo.splitlines()) if m]
        # nothing image-sized moves: at most the (N, 512) moments of in-batch partners
        big = [m.group(0) for m in collectives if re.search(r"\\[\\d+,\\d+,\\d+,\\d+\\]", m.group(1))]
        assert not big, (name, big)
        if name == "inbatch":  # the partners' moments must cross devices: the pattern does see collectives
            assert collectives, "no collective found: the HLO pattern is stale"
        if name == "gaussian":
            assert not collectives, [m.group(0) for m in collectives]
            one = style_augment(key, images, GaussianStyles.fit(bank), weights=adain_jax.init_weights(0), p=0.5)
            np.testing.assert_allclose(np.asarray(out), np.asarray(one), atol=1e-5)
            assert 0 < ((np.asarray(out) != images).any(axis=(1, 2, 3))).sum() < 8
        print(name, "ok")
""")


def test_on_a_batch_sharded_mesh_images_stay_where_they_are():
    proc = run_on_devices(_SHARDED, 4)
    assert proc.stdout.split() == ["gaussian", "ok", "inbatch", "ok"]
