"""train.train: the optimiser, the pure jitted step, 8 devices vs 1, exact resume, stopping, errors.

Every subprocess has a timeout; training loops on CPU wait for each step (no many-steps-in-flight
all-reduces, which can deadlock on the host platform), so nothing here can hang CI.
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import adain_jax
from helpers import ROOT, run_on_devices
from adain_jax import parallel
from train import checkpointing, metric_writer, train
from train.errors import SetupError
from training_helpers import (SUBPROCESS_TIMEOUT, kill_after_checkpoint, main_command, make_image_folder, run_main,
                              subprocess_env, tiny_config, wait_until, write_vgg_dir)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    return {
        "content": make_image_folder(base / "content", 5, seed=1),
        "style": make_image_folder(base / "style", 4, seed=2),
        "vgg": write_vgg_dir(base / "vgg"),
        "tfds_data_dir": base / "tfds",
        "cache": base / "xla_cache",  # persistent compilation cache shared by the subprocesses
    }


def config_for(setup, **overrides):
    paths = {k: setup[k] for k in ("content", "style", "vgg", "tfds_data_dir")}
    paths.update(overrides)
    return tiny_config(**paths)


def cli_overrides(setup, **overrides):
    base = dict(content=setup["content"], style=setup["style"], vgg=setup["vgg"],
                tfds_data_dir=setup["tfds_data_dir"], compilation_cache_dir=setup["cache"], image_size=32,
                crop_size=32, batch_size=2, log_every=1, sample_every=0, num_workers=1, prefetch=1,
                progress_bar=False)
    base.update(overrides)
    return base


# --------------------------------------------------------------------------------------------------
# Optimiser and initialisation.
# --------------------------------------------------------------------------------------------------


def test_inverse_time_schedule_and_adam_follow_the_port():
    import torch

    config = tiny_config(content="", style="", vgg="", tfds_data_dir="", lr=1e-2, lr_decay=0.5)
    tx, schedule = train.make_optimizer(config)
    np.testing.assert_allclose([schedule(s) for s in (0, 1, 4)], [1e-2, 1e-2 / 1.5, 1e-2 / 3], rtol=1e-6)
    # train.py: adjust_learning_rate(optimizer, i) before optimizer.step() at iteration i = 0, 1, ...
    rng = np.random.default_rng(0)
    p0 = rng.standard_normal(5).astype(np.float32)
    grads = [rng.standard_normal(5).astype(np.float32) for _ in range(4)]
    param = torch.nn.Parameter(torch.from_numpy(p0.copy()))
    opt = torch.optim.Adam([param], lr=1e-2)
    for i, g in enumerate(grads):
        for group in opt.param_groups:
            group["lr"] = 1e-2 / (1.0 + 0.5 * i)
        param.grad = torch.from_numpy(g)
        opt.step()
    p, state = jnp.asarray(p0), tx.init(jnp.asarray(p0))
    for g in grads:
        updates, state = tx.update(jnp.asarray(g), state, p)
        p = optax.apply_updates(p, updates)
    np.testing.assert_allclose(p, param.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_lr_warmup_ramps_then_follows_the_decay():
    config = tiny_config(content="", style="", vgg="", tfds_data_dir="", lr=1e-2, lr_decay=0.5, lr_warmup=4)
    _, schedule = train.make_optimizer(config)
    # (step + 1) / 4 of the decayed rate for steps 0-2, then the port's schedule unchanged.
    expected = [1e-2 * (s + 1) / 4 / (1 + 0.5 * s) for s in range(3)] + [1e-2 / (1 + 0.5 * s) for s in (3, 4, 10)]
    np.testing.assert_allclose([schedule(s) for s in (0, 1, 2, 3, 4, 10)], expected, rtol=1e-6)


def test_decoder_init_is_pytorch_default():
    params = train.init_decoder(0)
    for spec in adain_jax.model.architecture.DECODER:
        bound = np.float32(1 / np.sqrt(spec.in_channels * 9)) * (1 + 1e-6)
        kernel, bias = np.asarray(params[spec.name]["kernel"]), np.asarray(params[spec.name]["bias"])
        assert kernel.shape == spec.flax_kernel_shape and bias.shape == (spec.out_channels,)
        assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.9 * bound
        assert np.abs(bias).max() <= bound and np.std(bias) > 0
    again, other = train.init_decoder(0), train.init_decoder(1)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(again)))
    assert not np.array_equal(params["conv1_1"]["kernel"], other["conv1_1"]["kernel"])


# --------------------------------------------------------------------------------------------------
# The step (one device, in-process).
# --------------------------------------------------------------------------------------------------


def test_train_step_is_pure_trains_only_the_decoder_and_donates(setup):
    config = config_for(setup)
    tx, schedule = train.make_optimizer(config)
    mesh = parallel.make_mesh(jax.devices()[:1])
    vgg = adain_jax.load_weights(setup["vgg"])
    host_state = jax.device_get(train.create_train_state(config, vgg, tx))
    step = train.make_train_step(config, mesh, tx, schedule)
    rng = np.random.default_rng(0)
    batch = {k: rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for k in ("content", "style")}
    results = []
    for _ in range(2):
        state = parallel.put_replicated(host_state, mesh)
        new_state, metrics = step(state, parallel.put_batch(batch, mesh))
        jax.block_until_ready(new_state)
        assert jax.tree.leaves(state.params)[0].is_deleted()  # the old state's buffers were donated
        results.append((jax.device_get(new_state), jax.device_get(metrics)))
    assert step._cache_size() == 1  # the second call reused the first call's compilation
    (s1, m1), (s2, m2) = results
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s2)))  # pure
    assert m1 == m2 and set(m1) == {"loss", "content_loss", "style_loss", "lr"}
    np.testing.assert_allclose(m1["loss"], m1["content_loss"] + 10 * m1["style_loss"], rtol=1e-6)
    assert m1["lr"] == pytest.approx(config.lr)
    assert int(s1.step) == 1
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s1.encoder), jax.tree.leaves(host_state.encoder)))
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree.leaves(s1.params), jax.tree.leaves(host_state.params)))
    # The loss is the one of adain_jax.model.losses on the same (uint8 / 255) images.
    ref, _ = jax.jit(adain_jax.model.losses.adain_loss)(host_state.params, host_state.encoder,
                                                  batch["content"] / np.float32(255), batch["style"] / np.float32(255))
    # Two different float32 XLA programs, each ~1e-5 from float64 at these sizes; a wrong weighting or
    # input scale would be off by 1e-2 or more.
    np.testing.assert_allclose(m1["loss"], ref, rtol=1e-4)



def test_style_weight_warmup_ramps_the_style_term_from_zero(setup):
    """config.style_weight_warmup=4: the loss weighs the style term 0, 2.5, 5 at steps 0, 1, 2 (style
    weight 10), and the logged weight says so; the loss is still content + weight x style."""
    config = config_for(setup, style_weight_warmup=4)
    tx, schedule = train.make_optimizer(config)
    mesh = parallel.make_mesh(jax.devices()[:1])
    state = parallel.put_replicated(train.create_train_state(config, adain_jax.load_weights(setup["vgg"]), tx), mesh)
    step = train.make_train_step(config, mesh, tx, schedule)
    rng = np.random.default_rng(1)
    batch = parallel.put_batch({k: rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
                                for k in ("content", "style")}, mesh)
    for expected in (0.0, 2.5, 5.0):
        state, metrics = step(state, batch)
        metrics = jax.device_get(metrics)
        assert metrics["style_weight"] == pytest.approx(expected)
        assert metrics["style_loss"] > 0.01  # a zero weight must not hide a zero term
        np.testing.assert_allclose(metrics["loss"], metrics["content_loss"] + expected * metrics["style_loss"],
                                   rtol=1e-5)
    assert train.style_weight_at(100, 10.0, 4) == pytest.approx(10.0)  # the ramp stops at the full weight
    assert train.style_weight_at(100, 10.0, 0) == 10.0

# --------------------------------------------------------------------------------------------------
# 8 devices vs 1 (subprocesses: the device count is fixed when the backend starts).
#
# In float64 the data-parallel step reproduces the single-device step to ~1e-12 (the all-reduce only
# reorders a sum). In float32 - what training runs - one step's loss agrees to ~1e-7, but Adam's
# normalised update m / sqrt(v) is about sign(g) for every element, so an element whose gradient is
# at the float32 rounding level of its summands can flip sign with the summation order and move by
# up to 2 * lr instead of 0: after 3 steps a few percent of the parameters differ by up to ~lr. That
# is a property of float32 Adam, not of the sharding; the float32 test bounds it, the float64 test
# shows the computation itself is the same.
# --------------------------------------------------------------------------------------------------

EIGHT_VS_ONE = textwrap.dedent("""
    import json, sys
    import jax, jax.numpy as jnp, numpy as np
    DTYPE = sys.argv[1]
    if DTYPE == "float64":
        jax.config.update("jax_enable_x64", True)
    from adain_jax.model import ops
    if DTYPE == "float64" and ops.moments(jnp.zeros((1, 2, 2, 1), jnp.float64))[0].dtype != jnp.float64:
        # adain_jax.model.ops.moments computes in float32 whatever its input; for this check use the same
        # formula in float64 (the unbiased variance + eps), so that nothing rounds to float32.
        def moments(x, mask=None, eps=ops.EPS):
            assert mask is None
            mean = jnp.mean(x, axis=(1, 2))
            var = jnp.sum(jnp.square(x - mean[:, None, None, :]), axis=(1, 2)) / (x.shape[1] * x.shape[2] - 1)
            return mean, jnp.sqrt(var + eps)
        ops.moments = moments
    import torch_reference as ref
    from adain_jax import parallel
    from train import train
    from training_helpers import official_random_weights, tiny_config, tree_max_rel_diff
    assert jax.device_count() == 8, jax.devices()
    config = tiny_config(content="", style="", vgg="", tfds_data_dir="", batch_size=8, image_size=16, crop_size=16,
                         lr=1e-4, dtype=DTYPE)
    tx, schedule = train.make_optimizer(config)
    as_dtype = lambda tree: jax.tree.map(lambda x: np.asarray(x, DTYPE), tree)
    params = as_dtype(train.init_decoder(0))
    host_state = train.TrainState(step=np.zeros((), np.int32), params=params,
                                  encoder=as_dtype(official_random_weights(0)["encoder"]),
                                  opt_state=jax.device_get(tx.init(params)))
    batches = [{k: (ref.make_images(10 * i + j, 8, 16, 16) * 255).round().astype(np.uint8)
                for j, k in enumerate(("content", "style"))} for i in range(3)]
    out = {}
    for name, devices in (("8", jax.devices()), ("1", jax.devices()[:1])):
        mesh = parallel.make_mesh(devices)
        step = train.make_train_step(config, mesh, tx, schedule)
        state, losses, lrs = parallel.put_replicated(host_state, mesh), [], []
        for batch in batches:
            state, metrics = step(state, parallel.put_batch(batch, mesh))
            metrics = jax.block_until_ready(metrics)  # one step in flight at a time
            losses.append(float(metrics["loss"]))
            lrs.append(float(metrics["lr"]))
        out[name] = (jax.device_get(state.params), losses, step._cache_size(), state.params["conv1_1"]["kernel"], lrs)
    flat = lambda tree: np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])
    p8, p1 = flat(out["8"][0]), flat(out["1"][0])
    print(json.dumps({
        "param_max_rel_diff": tree_max_rel_diff(out["8"][0], out["1"][0]),
        "param_max_abs_diff": float(np.max(np.abs(p8 - p1))),
        "fraction_within_1e-5": float(np.mean(np.abs(p8 - p1) <= 1e-5 * np.max(np.abs(p1)))),
        "lr_sum": sum(out["1"][4]),
        "loss_rel_diff": [abs(a - b) / abs(b) for a, b in zip(out["8"][1], out["1"][1])],
        "losses": out["1"][1], "compiles": [out["8"][2], out["1"][2]],
        "moved": tree_max_rel_diff(out["8"][0], params), "dtype": str(out["8"][3].dtype),
        "replicated": out["8"][3].sharding.is_fully_replicated, "devices": len(out["8"][3].sharding.device_set),
    }))
""")


def run_eight_vs_one(dtype: str) -> dict:
    proc = run_on_devices(EIGHT_VS_ONE, 8, dtype,
                          timeout=2 * SUBPROCESS_TIMEOUT if dtype == "float64" else SUBPROCESS_TIMEOUT)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    print(result)
    assert result["dtype"] == dtype
    assert result["compiles"] == [1, 1]  # 3 steps, one compilation per mesh
    assert result["replicated"] and result["devices"] == 8
    assert result["moved"] > 1e-3  # the parameters did change, so the comparisons are not vacuous
    return result


def test_eight_devices_match_one_device_float32():
    result = run_eight_vs_one("float32")
    # The same batch and weights give the same loss, up to the rounding of other per-device batch sizes.
    assert result["loss_rel_diff"][0] < 1e-4
    assert max(result["loss_rel_diff"]) < 1e-4
    # Differences are Adam sign flips of rounding-level gradients: at most ~2 lr per step, and rare.
    assert result["param_max_abs_diff"] <= 2 * result["lr_sum"] * 1.01
    # How many elements flip depends on how the CPU rounds (measured 0.88 on one machine): only a sanity floor.
    assert result["fraction_within_1e-5"] > 0.5


@pytest.mark.slow
def test_eight_devices_match_one_device_float64():
    """3 steps on 8 devices give the same parameters as on 1 device (to 1e-5; measured ~1e-12).

    float64 convolutions are slow on XLA:CPU: about 3 minutes on 2 cores."""
    result = run_eight_vs_one("float64")
    assert result["param_max_rel_diff"] < 1e-5
    assert max(result["loss_rel_diff"]) < 1e-10


# --------------------------------------------------------------------------------------------------
# The whole loop (subprocesses of `python -m train.main`).
# --------------------------------------------------------------------------------------------------

RESUME_STEPS, RESUME_EVERY = 12, 4


@pytest.fixture(scope="module")
def uninterrupted(setup, tmp_path_factory):
    """A complete reference run; its workdir doubles as a trained workdir for the stylize/export tests."""
    workdir = tmp_path_factory.mktemp("uninterrupted")
    proc = run_main(workdir, **cli_overrides(setup, num_steps=RESUME_STEPS, checkpoint_every=RESUME_EVERY))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_resume_after_sigkill_continues_exactly(setup, uninterrupted, tmp_path):
    workdir = tmp_path / "killed"
    overrides = cli_overrides(setup, num_steps=RESUME_STEPS, checkpoint_every=RESUME_EVERY)
    kill_after_checkpoint(main_command(workdir, **overrides), workdir, 4)
    logged_before = max(r["step"] for r in metric_writer.read_metrics(workdir))
    restart_from = checkpointing.Checkpointer(workdir).latest_step()
    assert logged_before > restart_from, "the kill did not fall between checkpoints"
    assert logged_before < RESUME_STEPS

    resumed = run_main(workdir, **overrides)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resuming from {workdir / 'checkpoints' / str(restart_from)} at step {restart_from}" in resumed.stderr
    # The same config was compiled by the runs before (shared config.compilation_cache_dir): no compilation.
    assert "(loaded from the compilation cache)" in resumed.stderr
    expected = metric_writer.read_metrics(uninterrupted)
    got = metric_writer.read_metrics(workdir)
    assert [r["step"] for r in got] == list(range(1, RESUME_STEPS + 1))
    assert got == expected  # every logged value, bit for bit (JSON floats round-trip exactly)
    a, b = adain_jax.load_weights(uninterrupted), adain_jax.load_weights(workdir)
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(f"killed after step {logged_before}, resumed from checkpoint {restart_from}; steps "
          f"{restart_from + 1}..{RESUME_STEPS} equal the uninterrupted run's exactly")


def test_sigterm_saves_a_checkpoint_and_exits(setup, tmp_path):
    workdir = tmp_path / "terminated"
    overrides = cli_overrides(setup, num_steps=1000, checkpoint_every=1000)
    proc = subprocess.Popen(main_command(workdir, **overrides), cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(proc, lambda: len(metric_writer.read_metrics(workdir)) >= 2, SUBPROCESS_TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    last = max(r["step"] for r in metric_writer.read_metrics(workdir))
    assert checkpointing.Checkpointer(workdir).latest_step() == last < 1000
    assert "Run the same command to resume" in stderr


def test_trained_workdir_is_usable_for_stylize(uninterrupted):
    weights = adain_jax.load_weights(uninterrupted)  # what `adain-jax stylize --weights WORKDIR` does
    images = np.random.default_rng(0).uniform(size=(1, 32, 32, 3)).astype(np.float32)
    out = np.asarray(adain_jax.stylize(weights, images, images))
    assert out.shape == (1, 32, 32, 3) and np.all(np.isfinite(out))
    assert (uninterrupted / "config.json").exists() and list((uninterrupted / "tensorboard").iterdir())
    info = json.loads((uninterrupted / "config.json").read_text())
    assert info["config"]["num_steps"] == RESUME_STEPS and info["content"]["records"] == 5


# --------------------------------------------------------------------------------------------------
# Bad setup: one clear line naming the path, non-zero exit.
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", ["missing_content", "empty_style", "empty_vgg", "unset_vgg", "bad_crop"])
def test_bad_setup_raises_setup_error_naming_the_path(setup, tmp_path, case):
    empty = tmp_path / "empty"
    empty.mkdir()
    overrides = {"missing_content": {"content": str(tmp_path / "nope")}, "empty_style": {"style": str(empty)},
                 "empty_vgg": {"vgg": str(empty)}, "unset_vgg": {"vgg": ""},
                 "bad_crop": {"crop_size": 36}}[case]
    config = config_for(setup, **overrides)
    with pytest.raises(SetupError) as err:
        train.train_and_evaluate(config, tmp_path / "w")
    message = str(err.value)
    assert "\n" not in message
    expected = {"missing_content": str(tmp_path / "nope"), "empty_style": str(empty), "empty_vgg": str(empty),
                "unset_vgg": "config.vgg", "bad_crop": "config.crop_size"}[case]
    assert expected in message


@pytest.mark.parametrize("devices", [2, 3, 8])
def test_batch_size_must_divide_over_devices(devices):
    # A pure check of numbers, so it runs (and can fail) on a machine with one device.
    train.check_batch_size(devices * 3, devices)
    with pytest.raises(SetupError, match=rf"batch_size \({devices * 3 + 1}\) must be a multiple of the number "
                                         rf"of devices \({devices}\)"):
        train.check_batch_size(devices * 3 + 1, devices)


# --------------------------------------------------------------------------------------------------
# Decoder variants and batch statistics (the MVA study's switches).
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key,value", [("skip", "residual"), ("skip_source", "neither"), ("input_norm", "vgg"),
                                       ("statistics", "group")])
def test_bad_variant_keys_raise_setup_error_naming_the_key(setup, tmp_path, key, value):
    with pytest.raises(SetupError, match=rf"config\.{key} must be one of .*'{value}'"):
        train.train_and_evaluate(config_for(setup, **{key: value}), tmp_path / "w")


def test_concat_decoder_with_batch_statistics_trains_and_its_checkpoint_stylizes(setup, tmp_path):
    from adain_jax.model import variants
    from train import export

    variant = variants.DecoderVariant("concat", "content")
    config = config_for(setup, skip="concat", statistics="batch", num_steps=2, checkpoint_every=2, image_size=16,
                        crop_size=16, sample_every=2, num_samples=2, sample_size=16)
    workdir = tmp_path / "concat"
    state = train.train_and_evaluate(config, workdir)
    assert np.shape(state.params["conv3_2"]["kernel"]) == (3, 3, 256, 128)  # the concat decoder's shapes
    assert (workdir / "samples" / "step_0000002.jpg").is_file()  # the grid was drawn with that decoder
    loaded = adain_jax.load_weights(workdir)  # what `adain-jax stylize --weights WORKDIR` does
    assert variants.of(loaded) == variant
    in_memory = variants.attach(parallel.local_copy({"encoder": state.encoder, "decoder": state.params}), variant)
    rng = np.random.default_rng(0)
    # the sample grid's shapes (2 contents x 2 styles of 16 px): its compiled program serves here too
    content, style = (rng.uniform(size=(2, 16, 16, 3)).astype(np.float32) for _ in range(2))
    expected = np.asarray(adain_jax.stylize(in_memory, content, style))
    np.testing.assert_array_equal(np.asarray(adain_jax.stylize(loaded, content, style)), expected)
    exported = export.export(workdir, tmp_path / "exported")  # a standalone weights directory keeps it too
    np.testing.assert_array_equal(np.asarray(adain_jax.stylize(adain_jax.load_weights(exported), content, style)),
                                  expected)
    # resuming that workdir with another decoder is refused before anything is restored
    with pytest.raises(SetupError, match=r"for the decoder skip=concat \(content\), the config asks for plain"):
        train.train_and_evaluate(config_for(setup, num_steps=4, image_size=16, crop_size=16), workdir)


@pytest.mark.parametrize("backend, vendor, flags, onednn_bf16, devices, expected", [
    ("cpu", "GenuineIntel", {"avx512_bf16", "amx_bf16"}, True, 1, "bfloat16"),  # AMX through oneDNN
    ("cpu", "GenuineIntel", {"avx512_bf16", "amx_bf16"}, True, 2, "float32"),  # a CPU mesh runs XLA's convolutions
    ("cpu", "GenuineIntel", {"avx512_bf16"}, True, 1, "float32"),  # Xeon without AMX: float32 measured 1.8x faster
    ("cpu", "AuthenticAMD", {"avx512_bf16"}, True, 1, "bfloat16"),  # Zen 5: bfloat16 measured 1.6x faster
    ("cpu", "AuthenticAMD", {"avx512_bf16"}, True, 2, "float32"),
    ("cpu", "AuthenticAMD", {"avx512_bf16"}, False, 1, "float32"),  # no oneDNN path (ADAIN_JAX_ONEDNN=0, say)
    ("cpu", "AuthenticAMD", {"avx2"}, False, 1, "float32"),  # Zen 3: no bfloat16 unit
    ("cpu", "GenuineIntel", {"amx_bf16"}, False, 1, "float32"),  # AMX, but no oneDNN path (not built)
    ("cpu", "", set(), False, 1, "float32"),
    ("gpu", "", set(), False, 2, "bfloat16"),
])
def test_auto_dtype_picks_the_faster_one_and_asking_for_the_slower_bfloat16_is_warned_about(
        caplog, monkeypatch, backend, vendor, flags, onednn_bf16, devices, expected):
    import ml_collections

    from adain_jax import cpuinfo, onednn

    monkeypatch.setattr(jax, "default_backend", lambda: backend)
    monkeypatch.setattr(jax, "device_count", lambda: devices)
    monkeypatch.setattr(cpuinfo, "flags", lambda: set(flags))
    monkeypatch.setattr(cpuinfo, "vendor", lambda: vendor)
    monkeypatch.setattr(onednn, "available", lambda dtype="bfloat16": onednn_bf16 and dtype == "bfloat16")
    auto, bf16, f32 = (ml_collections.ConfigDict({"dtype": d}) for d in ("auto", "bfloat16", "float32"))
    assert train.compute_dtype(auto) == jnp.dtype(expected)
    assert (train.compute_dtype(bf16), train.compute_dtype(f32)) == (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float32))
    with caplog.at_level("WARNING"):
        for config in (f32, auto, bf16):
            train.warn_about_cpu_bfloat16(config)
    # One warning, for an explicit bfloat16 where float32 is the faster; none where bfloat16 is.
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == (expected == "float32")
    assert all(w.startswith("config.dtype=bfloat16 on a CPU where float32 trains faster")
               and "--config.dtype=auto" in w and "\n" not in w for w in warnings)


def test_an_unknown_dtype_is_a_one_line_setup_error(setup, tmp_path):
    with pytest.raises(SetupError, match=r"^config.dtype must be one of float32, bfloat16, auto, got 'float16'$"):
        train.train_and_evaluate(config_for(setup, dtype="float16"), tmp_path / "w")
