"""benchmarks/ (run.py, flops.py, jax_side.py, torch_side.py, video.py, startup.py): how sides are paired
by precision, how rows are reported against the peak of their precision, and that the bfloat16 sides
compute in bfloat16. Tiny runs check that each benchmark produces its rows; no timing is asserted
here (speed is measured by running the benchmarks)."""

from __future__ import annotations

import types

import numpy as np
import pytest

from benchmarks import flops, run


def _side(precision):
    return types.SimpleNamespace(precision=precision)


def _timed(*times):
    return {"times_s": list(times), "median_s": float(np.median(times)), "min_s": min(times)}


SIDES = {"jax": _side("float32"), "jax_bf16": _side("bfloat16"), "eager": _side("float32"), "bf16": _side("bfloat16")}


def _row():
    return {"bench": "stylize", "size": 512, "batch": 1, "style_encoding": "included", "flops": 100e9,
            "results": {"jax": _timed(1.0, 3.0), "jax_bf16": _timed(0.25, 0.5),
                        "eager": _timed(2.0, 4.0), "bf16": _timed(1.0, 0.5)},
            "max_abs_diff_vs_jax_float32": {"jax_bf16": 0.046, "bf16": 0.053}}


def test_defaults_include_bf16_autocast_and_unknown_modes_are_refused(capsys):
    assert run.parse_args([]).torch_modes == ["eager", "channels_last", "compile", "bf16"]
    assert run.parse_args(["--quick"]).torch_modes == ["eager", "channels_last", "bf16"]
    with pytest.raises(SystemExit):
        run.parse_args(["--torch-modes", "eager,fp16"])
    assert "unknown --torch-modes ['fp16']" in capsys.readouterr().err


def test_each_pytorch_mode_is_compared_with_the_jax_side_of_its_precision():
    row = _row()
    run.summarise(row, SIDES)
    assert set(row["ratios"]) == {"eager", "bf16"}
    assert row["ratios"]["eager"]["jax_side"] == "jax"
    assert row["ratios"]["eager"]["median"] == pytest.approx(2.0 / 3.0)
    assert row["ratios"]["eager"]["paired_median"] == pytest.approx(0.5 * (1.0 / 2.0 + 3.0 / 4.0))
    assert row["ratios"]["bf16"]["jax_side"] == "jax_bf16"
    assert row["ratios"]["bf16"]["median"] == pytest.approx(0.375 / 0.75)
    assert row["ratios"]["bf16"]["min"] == pytest.approx(0.25 / 0.5)
    assert row["ratios"]["bf16"]["paired_median"] == pytest.approx(0.5 * (0.25 + 1.0))


def test_a_pytorch_mode_without_a_jax_side_of_its_precision_gets_no_ratio():
    row = _row()
    sides = {k: v for k, v in SIDES.items() if k != "jax_bf16"}
    run.summarise(row, sides)
    assert set(row["ratios"]) == {"eager"}


def test_rows_report_gflops_as_a_share_of_their_precisions_peak():
    row = _row()
    run.summarise(row, SIDES)
    peak = {"theoretical": {"gflops": 333.0, "cores": 2, "fma_units": 2, "fp32_lanes": 16, "ghz": 2.6},
            "gemm_gflops": 150.0,
            "matmul": {"float32": {"jax": 250.0, "torch": 200.0, "peak": 250.0},
                       "bfloat16": {"jax": 500.0, "torch": 1000.0, "peak": 1000.0}}}
    machine = {"cpu": "test CPU", "cores": 2, "threads": 2, "memory_gb": 8.0, "load_start": (1.0, 1.0, 1.0),
               "load_end": (2.0, 2.0, 2.0), "python": "3", "jax": "j", "jaxlib": "j", "flax": "f", "torch": "t",
               "jax_devices": "cpu", "xla_flags": "", "xla_flags_status": "applied", "bf16_units": "amx_bf16",
               "onednn": "oneDNN"}
    table = run.markdown({"started": "now", "machine": machine, "peak": peak, "rows": [row]})
    lines = {line.split(" | ")[2]: line for line in table.splitlines() if line.startswith("| stylize")}
    # float32: 100 GFLOP in 2 s median = 50 GFLOP/s = 20 % of 250; eager 100 / 3 s = 33 (13 %).
    assert "| 50 (20%) | 33 (13%) | - |" in lines["eager"]
    # bfloat16: 100 GFLOP in 0.375 s = 267 GFLOP/s = 27 % of 1000; PyTorch 0.75 s = 133 (13 %).
    assert "| bfloat16 | bf16 autocast, channels_last |" in lines["bf16 autocast, channels_last"]
    assert "| 267 (27%) | 133 (13%) | 0.046 / 0.053 |" in lines["bf16 autocast, channels_last"]
    assert "measured bfloat16 matmul peak: **1000 GFLOP/s**" in table


def test_better_peaks_keeps_the_higher_rate_per_library_and_precision():
    a = {"float32": {"jax": 200.0, "torch": 150.0, "peak": 200.0}}
    b = {"float32": {"jax": 180.0, "torch": 240.0, "peak": 240.0}}
    assert flops.better_peaks(a, b) == {"float32": {"jax": 200.0, "torch": 240.0, "peak": 240.0}}


@pytest.fixture(scope="module")
def state_dicts():
    from benchmarks import fixtures

    return fixtures.state_dicts()


def test_torch_bf16_mode_runs_under_autocast_and_returns_float32(state_dicts):
    from benchmarks import fixtures, torch_side

    assert torch_side.MODES == run.TORCH_MODES
    content, style = fixtures.images(1, 1, 64), fixtures.images(2, 1, 64)
    out = {}
    for mode in ("eager", "bf16"):
        side = torch_side.TorchSide(*state_dicts, mode)
        result = side.stylize(side.inputs(content), side.inputs(style))
        out[mode] = side.to_numpy(result)
    assert out["bf16"].dtype == np.float32 and out["bf16"].shape == (1, 64, 64, 3)
    diff = np.max(np.abs(out["bf16"] - out["eager"]))
    assert 1e-4 < diff < 0.25  # bfloat16's 8-bit mantissa shows, but it is the same picture


def test_jax_bf16_side_passes_its_precision_to_the_library(state_dicts):
    from benchmarks import fixtures
    from benchmarks.jax_side import JaxSide

    content, style = fixtures.images(1, 1, 64), fixtures.images(2, 1, 64)
    out = {}
    for precision in ("float32", "bfloat16"):
        side = JaxSide(*state_dicts, precision)
        out[side.name] = side.to_numpy(side.stylize(side.inputs(content), side.inputs(style)))
    assert set(out) == {"jax", "jax_bf16"}
    diff = np.max(np.abs(out["jax_bf16"] - out["jax"]))
    assert 1e-4 < diff < 0.25


def test_video_benchmark_pairs_each_precision_with_pytorch_in_the_same_precision(capsys):
    pytest.importorskip("av")
    from benchmarks import video

    rows = video.measure(lines=(32,), frames=2, batch=2, style_size=32, precisions=("float32", "bfloat16"))
    assert [(r["lines"], r["precision"]) for r in rows] == [(32, "float32"), (32, "bfloat16")]
    assert all(r["jax_fps"] > 0 and r["torch_fps"] > 0 for r in rows)
    table = video.markdown(rows).splitlines()
    assert [line.split(" | ")[1] for line in table if line.startswith("| ") and "x32 |" in line] == \
        ["float32", "bfloat16"]


def test_startup_benchmark_prints_the_whole_process_against_the_warm_computation(capsys, tmp_path):
    from adain_jax import examples
    from benchmarks import startup

    startup.main(["--runs", "1", "--content-size", "32", "--style-size", "32",
                  "--content", str(sorted((examples.PACKAGED / "content").iterdir())[0])])
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0].strip("| "): line for line in out.splitlines() if line.startswith("| ")}
    assert {"python -c pass", "python -c 'import jax'", "adain-jax stylize",
            "same computation, warm process"} <= set(rows)
    assert "random weights" in out and "outside the computation:" in out


def test_instruction_set_limits_are_read_from_the_environment_and_named_in_the_table():
    env = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "",
           "XLA_FLAGS": "--xla_cpu_foo=1 --xla_cpu_max_isa=AVX2"}
    assert run.isa_limits(env) == ["ONEDNN_MAX_CPU_ISA=AVX2", "ATEN_CPU_CAPABILITY=avx2", "--xla_cpu_max_isa=AVX2"]
    assert run.isa_limits({"XLA_FLAGS": "--xla_cpu_foo=1"}) == []
    machine = {"onednn_isa": "avx2", "torch_isa": "AVX2", "isa_limits": run.isa_limits(env)}
    (line,) = run.isa_lines(machine)
    assert "oneDNN `avx2`" in line and "PyTorch's kernels `AVX2`" in line
    assert "**limited** by ONEDNN_MAX_CPU_ISA=AVX2, ATEN_CPU_CAPABILITY=avx2, --xla_cpu_max_isa=AVX2" in line
    (line,) = run.isa_lines({"onednn_isa": "avx512_core_bf16", "torch_isa": "AVX512", "isa_limits": []})
    assert "limited" not in line


def test_instruction_set_limits_give_torch_compile_a_kernel_cache_of_its_own():
    env = {"ATEN_CPU_CAPABILITY": "avx2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2"}
    run.separate_inductor_cache(env)
    cache = env["TORCHINDUCTOR_CACHE_DIR"]
    assert "atencpucapabilityavx2" in cache and "xlacpumaxisaavx2" in cache
    env = {"ATEN_CPU_CAPABILITY": "avx2", "TORCHINDUCTOR_CACHE_DIR": "/mine"}
    run.separate_inductor_cache(env)
    assert env["TORCHINDUCTOR_CACHE_DIR"] == "/mine"  # the user's choice stands
    env = {"XLA_FLAGS": "--xla_cpu_foo=1"}
    run.separate_inductor_cache(env)
    assert "TORCHINDUCTOR_CACHE_DIR" not in env  # no limits: the default cache
