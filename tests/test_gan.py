"""train.gan: the GAN step (pure, no recompiles for mixing), the lazy-R1 alternation, exact resume after
SIGKILL through `python -m train.main`, and a workdir that `adain_jax.stylegan.load_generator` reads."""

from __future__ import annotations

import json
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from adain_jax import parallel
from adain_jax import stylegan as sg
from helpers import ROOT
from gan_helpers import gan_command, tiny_config
from train import checkpointing, gan, gan_samples, metric_writer
from training_helpers import SUBPROCESS_TIMEOUT, kill_after_checkpoint, subprocess_env


@pytest.fixture(scope="module")
def setup():
    config = tiny_config()
    mesh = parallel.make_mesh(jax.devices()[:1])
    g_tx, d_tx = gan.make_optimizer(config.g_lr, config), gan.make_optimizer(config.d_lr, config)
    state = gan.create_gan_state(config, g_tx, d_tx)
    rng = np.random.default_rng(0)
    batch = {gan.IMAGES: rng.integers(0, 256, (config.batch_size, 8, 8, 3), dtype=np.uint8)}
    return config, mesh, state, batch


def _copy(tree, mesh):
    return parallel.put_replicated(jax.tree.map(np.array, tree), mesh)


def _equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_step_is_pure_updates_everything_and_mixing_never_recompiles(setup):
    config, mesh, state0, batch = setup
    step = gan.make_gan_step(config, mesh, r1=True)
    put = lambda: parallel.put_batch(batch, mesh)  # noqa: E731
    a, metrics = step(_copy(state0, mesh), put())
    b, _ = step(_copy(state0, mesh), put())
    assert _equal(a, b)  # a pure function of (state, batch)
    assert int(a.step) == 1
    for name in ("g_params", "d_params", "g_ema", "w_avg"):
        assert not _equal(getattr(a, name), getattr(state0, name)), name
    assert set(metrics) == {"d_loss", "g_loss", "r1", "real_score", "fake_score", "lr"}
    assert all(np.isfinite(float(v)) for v in metrics.values())
    # Later steps draw other latents and crossovers (a pure function of (seed, step)): one program.
    state = a
    for _ in range(4):
        state, _ = step(state, put())
    assert step._cache_size() == 1


def test_mixing_crossover_is_a_traced_draw_with_the_configured_rate():
    keys = jax.random.split(jax.random.key(3), 4000)
    draw = jax.jit(jax.vmap(lambda k, p: gan.mixing_crossover(k, p, 6), in_axes=(0, None)))
    mixed = np.asarray(draw(keys, 0.9))
    assert set(np.unique(mixed)) == {1, 2, 3, 4, 5, 6}
    assert abs(np.mean(mixed < 6) - 0.9) < 0.03  # 4000 draws: 3 sigma is 0.014
    assert np.all(np.asarray(draw(keys, 0.0)) == 6)  # never mixes
    assert draw._cache_size() == 1  # the probability is traced here too


def test_sample_grid_is_the_seeds_images_and_truncation_never_recompiles(setup, tmp_path):
    config, mesh, state, _ = setup
    gcfg = gan.generator_config(config)
    grid = gan_samples.SampleGrid(gcfg, count=2, cell=16)
    w_avg = jnp.full((gcfg.latent_dim,), 0.3)
    first = grid.images(state.g_ema, w_avg, psi=1.0)
    programs = sg.synthesis._cache_size()
    for psi in (0.7, 0.5, 0.0):
        grid.images(state.g_ema, w_avg, psi=psi)
    assert sg.synthesis._cache_size() == programs  # psi is traced
    assert first.shape == (4, 8, 8, 3) and 0 <= first.min() and first.max() <= 1
    # Seed s is the image of z = RandomState(s).randn (NVlabs' convention, the library's).
    z = np.random.RandomState(3).randn(gcfg.latent_dim).astype(np.float32)[None]
    ws = sg.broadcast_w(sg.mapping(state.g_ema, gcfg, z), gcfg)
    alone = np.clip((np.asarray(sg.synthesis(state.g_ema, gcfg, ws, jax.random.key(3)[None])) + 1) / 2, 0, 1)
    assert np.allclose(first[3], np.repeat(alone[0], 3, axis=-1), atol=1e-5)
    path, _ = grid.write(state.g_ema, w_avg, tmp_path / "g.png", header="t")
    assert path.is_file()


def test_alternating_step_takes_r1_every_kth_step_from_the_start_step():
    calls = []
    step = gan.AlternatingStep(lambda s, b: calls.append("r1"), lambda s, b: calls.append("plain"), 3, start_step=4)
    for _ in range(6):  # steps 5..10: R1 on the steps whose predecessor count is a multiple of 3 (6 and 9 done)
        step(None, None)
    assert calls == ["plain", "plain", "r1", "plain", "plain", "r1"]
    calls.clear()
    every = gan.AlternatingStep(lambda s, b: calls.append("r1"), None, 1, start_step=0)
    every(None, None), every(None, None)
    assert calls == ["r1", "r1"]


# --------------------------------------------------------------------------------------------------
# The whole run through `python -m train.main`.
# --------------------------------------------------------------------------------------------------

STEPS, EVERY = 12, 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("gan_xla_cache")


def _overrides(cache, **extra):
    # r1_every=2: the two programs alternate, so resume must pick the right one at the right step.
    return dict(num_steps=STEPS, checkpoint_every=EVERY, r1_every=2, compilation_cache_dir=cache, **extra)


@pytest.fixture(scope="module")
def uninterrupted(cache, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("gan_uninterrupted")
    proc = subprocess.run(gan_command("train.main", workdir, **_overrides(cache, sample_every=STEPS)), cwd=ROOT,
                          env=subprocess_env(), capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def _train_state(workdir, step):
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "train_state")


def test_resume_after_sigkill_continues_exactly(cache, uninterrupted, tmp_path):
    workdir = tmp_path / "killed"
    command = gan_command("train.main", workdir, **_overrides(cache))
    kill_after_checkpoint(command, workdir, 4)
    logged_before = max(r["step"] for r in metric_writer.read_metrics(workdir))
    restart_from = checkpointing.Checkpointer(workdir, adapter=gan.GAN_ITEMS).latest_step()
    assert logged_before > restart_from and logged_before < STEPS, (logged_before, restart_from)

    resumed = subprocess.run(command, cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                             timeout=SUBPROCESS_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {workdir / 'checkpoints' / str(restart_from)} at step {restart_from}" in resumed.stderr
    got, expected = metric_writer.read_metrics(workdir), metric_writer.read_metrics(uninterrupted)
    assert [r["step"] for r in got] == list(range(1, STEPS + 1))
    assert got == expected  # every logged value (losses, R1 on the even steps), bit for bit
    assert sum("r1" in r for r in got) == STEPS // 2
    a, b = sg.load_generator(uninterrupted), sg.load_generator(workdir)
    assert _equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])
    assert _equal(_train_state(uninterrupted, STEPS), _train_state(workdir, STEPS))  # both nets, Adam state


def test_workdir_holds_the_generator_its_config_and_the_sample_grid(uninterrupted):
    ema, gcfg, w_avg = sg.load_generator(uninterrupted)  # what `adain-jax generate --workdir` reads
    assert gcfg == gan.generator_config(tiny_config()) and w_avg.shape == (gcfg.latent_dim,)
    assert np.any(np.asarray(w_avg) != 0)
    images = sg.generate(ema, gcfg, jnp.zeros((2, gcfg.latent_dim)), jax.random.key(0))
    assert images.shape == (2, 8, 8, 1) and np.all(np.isfinite(np.asarray(images)))
    assert (uninterrupted / "samples" / f"step_{STEPS:07d}.png").is_file()
    info = json.loads((uninterrupted / "config.json").read_text())
    assert info["config"]["model"] == "stylegan" and info["data"]["spec"] == "sklearn:digits"
    meta = checkpointing.read_meta(uninterrupted, STEPS)
    assert meta["data_position"] == STEPS * 4 and meta["data_fingerprint"] == "sklearn:digits/1797"


def test_bad_settings_are_setup_errors():
    from train.errors import SetupError

    for overrides, needle in (({"use_styles": False}, "config:"),  # styles off needs the traditional input
                              ({"mixing_prob": 1.5}, "mixing_prob"), ({"r1_every": 0}, "r1_every"),
                              ({"resolution": 12}, "power of 2")):
        with pytest.raises(SetupError, match=needle):
            gan._validate(tiny_config(**overrides))
