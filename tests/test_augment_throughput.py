"""benchmarks/augment_throughput.py: one tiny run (32x32, batch 2, one round) gives every row, both sides
compute the same images for the same draws, and the JSON holds what the tables print. No timing is
asserted (speed is measured by running the benchmark)."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

from adain_jax import pretrained
from benchmarks import augment_throughput as bench

SIDES = {"jax", "jax_bf16", "eager", "bf16"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """(exit status, the JSON, stdout) of one tiny run with the packaged model (random weights without it)."""
    path = tmp_path_factory.mktemp("augment") / "results.json"
    weights = str(pretrained.DIRECTORY) if pretrained.available() else "random"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = bench.main(["--size", "32", "--batches", "2", "--repeats", "1", "--weights", weights,
                             "--json", str(path)])
    return status, json.loads(path.read_text()), out.getvalue()


def test_every_row_is_timed_on_both_sides_and_in_both_precisions(report):
    status, data, _ = report
    assert status == 0
    augment, train = data["rows"]
    assert (augment["bench"], augment["batch"], augment["size"]) == ("augment", 2, 32)
    assert set(augment["results"]) == SIDES
    assert {name: r["jax_side"] for name, r in augment["ratios"].items()} == {"eager": "jax", "bf16": "jax_bf16"}
    for r in augment["results"].values():
        assert len(r["times_s"]) == 1 and r["images_per_s"] == pytest.approx(2 / r["median_s"])
    assert train["bench"] == "train_step"
    assert set(train["results"]) == {"without", "with_float32", "with_bfloat16"}
    assert set(train["overhead"]) == {"with_float32", "with_bfloat16"}
    assert all(np.isfinite(loss) for loss in train["first_loss"].values())


def test_jax_and_pytorch_stylize_the_same_images_for_the_same_draws(report):
    _, data, _ = report
    parity = data["parity"]
    assert parity["ok"] and all(parity["unselected_unchanged"].values())
    assert parity["max_abs_diff"]["float32"] <= bench.PARITY_BOUND
    # bfloat16 on both sides: rounding shows, but it is the same picture.
    assert 0.0 < parity["max_abs_diff"]["bfloat16"] < 0.25


def test_the_tables_print_what_the_json_holds(report):
    _, data, table = report
    augment, train = data["rows"]
    augment_lines, train_lines = (part.splitlines() for part in table.split("Train step of", 1))
    for name, r in augment["ratios"].items():
        jax_r, torch_r = augment["results"][r["jax_side"]], augment["results"][name]
        row = next(line for line in augment_lines if line.startswith(f"| 2 | {r['precision']} | "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3:5] == [f"{jax_r['images_per_s']:.2f}", f"{torch_r['images_per_s']:.2f}"]
        assert cells[-1] == f"**{r['paired_median']:.2f}**"
    for name, r in train["results"].items():
        what = "none" if name == "without" else name.removeprefix("with_")
        row = next(line for line in train_lines if line.startswith(f"| 2 | {what} | "))
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[3] == f"{r['images_per_s']:.2f}"
        assert cells[-1] == ("baseline" if name == "without" else f"**{train['overhead'][name]:.2f}x**")
    assert f"float32 {data['parity']['max_abs_diff']['float32']:.2e}" in table
    assert data["machine"]["cpu"] in table and "load average" in table


def test_the_pytorch_weights_are_the_library_weights_in_the_official_layout(random_weights):
    from convert import torch_layout

    vgg_sd, dec_sd = bench.torch_state_dicts(random_weights)
    back = torch_layout.weights_from_torch("vgg", vgg_sd, "decoder", dec_sd)
    for net in ("encoder", "decoder"):
        for layer, params in back[net].items():
            for name, value in params.items():
                np.testing.assert_array_equal(value, np.asarray(random_weights[net][layer][name]))


def test_bad_arguments_are_one_line(capsys):
    for argv, message in ((["--precisions", "float16"], "unknown --precisions ['float16']"),
                          (["--batches", "a,b"], "--batches takes comma-separated integers")):
        with pytest.raises(SystemExit):
            bench.parse_args(argv)
        assert message in capsys.readouterr().err
