"""benchmarks/conv_layers.py: its tables are well formed at tiny sizes, from the command line as
docs/performance.md runs it (timings themselves are not asserted: these machines are noisy)."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--threads", "1", "--float32-sizes", "16", "--float32-batch", "1", "--float32-repeats", "1",
        "--train-size", "16", "--train-batch", "1", "--train-repeats", "1", "--no-torch-compile"]
ALL_TABLES = ["--sizes", "32", "--layer-size", "32", "--repeats", "1", "--layer-repeats", "1",
              "--backward-sizes", "16", "--backward-batch", "1", "--backward-repeats", "1"]


def _run(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.conv_layers", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=900, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _tables(text: str) -> dict[str, list[list[str]]]:
    """``### title`` -> the rows of the markdown table under it (cells stripped), header first."""
    tables, title = {}, None
    for line in text.splitlines():
        if line.startswith("### "):
            title = line[4:]
            tables[title] = []
        elif line.startswith("|") and title is not None:
            tables[title].append([c.strip() for c in line.strip("|").split("|")])
    return tables


def _check_table(rows: list[list[str]], count: int) -> None:
    header, rule, *body = rows
    assert all(c == "---" for c in rule) and len(rule) == len(header), rows[:2]
    assert len(body) == count and all(len(r) == len(header) for r in body), rows


def _ratios(rows: list[list[str]]) -> list[float]:
    """Every bold cell (the tables' ratios), as numbers."""
    return [float(m.group(1)) for row in rows[2:] for cell in row if (m := re.fullmatch(r"\*\*([\d.]+)\*\*", cell))]


def test_train_step_table_at_a_tiny_size():
    out = _run("--skip-float32", "--only-float32", "--train-step", *TINY)
    assert out.startswith("# convolutions per layer: ") and "1 threads" in out.splitlines()[0]
    tables = _tables(out)
    assert len(tables) == 1, list(tables)
    step = tables[next(iter(tables))]
    _check_table(step, 2)
    (routed, xla) = step[2:]
    assert routed[0] == "routed" and xla[0] == "xla" and xla[2] == "1.00" and xla[3] == routed[3] == "-"
    # Both steps start from the same weights and images: the same first loss to float32 rounding.
    assert float(routed[4]) == pytest.approx(float(xla[4]), rel=1e-4)


@pytest.mark.slow
def test_every_table_at_a_tiny_size():
    tables = _tables(_run(*TINY, *ALL_TABLES))
    titles = list(tables)
    assert [t.split(" (")[0].split(",")[0] for t in titles] == [
        "float32 per layer", "Per layer", "Whole network: encoder + AdaIN + decoder", "Backward per layer: dx"]
    # 16 rows: the 18 3x3 layers, same-shape layers sharing one (enc conv3_2/3_3, dec conv3_3/3_2).
    _check_table(tables[titles[0]], 16)
    names = [row[0] for row in tables[titles[0]][2:]]
    assert names[0] == "enc conv1_1" and names[-1] == "dec conv1_1"
    # oneDNN / XLA on every row, Winograd / oneDNN on the 13 without upsampling
    assert len(_ratios(tables[titles[0]])) == 2 * 16 + 2 * 13
    _check_table(tables[titles[1]], 11)
    _check_table(tables[titles[2]], 1)
    _check_table(tables[titles[3]], 14)
    assert all(r > 0 for t in titles for r in _ratios(tables[t]))
