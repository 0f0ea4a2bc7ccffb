"""The Colab notebooks run top to bottom on the CPU in smoke mode, and are committed without outputs.

``ADAIN_JAX_SMOKE=1`` (read by each notebook's first cell) swaps the Colab-only steps (install, Drive,
uploads, downloads) for the local checkout, random weights of the official format, the tiny packaged
example images and a few training steps. The notebooks are executed with nbclient in a kernel
running this interpreter; any cell that raises fails the test with the cell's traceback.
"""

from __future__ import annotations

import json
import pathlib
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("stylize.ipynb", "train.ipynb")
CELL_TIMEOUT_S = 480  # one cell; the whole notebook is bounded by the test's own timeout

nbformat = pytest.importorskip("nbformat", reason="needs the notebooks extra: pip install -e '.[notebooks]'")


def strip(nb):
    """Remove what running a notebook adds: outputs, execution counts and timings, widget state."""
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
    nb.metadata.pop("widgets", None)
    return nb


def _read(name):
    path = NOTEBOOKS / name
    if not path.exists():
        pytest.fail(f"{path} is missing")
    return nbformat.read(path, as_version=4)


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_valid_and_stripped(name):
    nb = _read(name)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for index, cell in enumerate(nb.cells):
        where = f"{name} cell {index}"
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{where} has outputs: strip them before committing"
            assert cell.execution_count is None, f"{where} has an execution count: strip outputs"
        assert "execution" not in cell.metadata, f"{where} carries execution timings: strip outputs"
        assert "attachments" not in cell or not cell.attachments, f"{where} has attachments"
    assert "widgets" not in nb.metadata, f"{name} carries widget state: strip it"
    # The smoke switch is read in the first code cell, before anything Colab-only can run.
    first_code = next(c for c in nb.cells if c.cell_type == "code")
    assert 'os.environ.get("ADAIN_JAX_SMOKE") == "1"' in first_code.source
    # Opened from any fork, a notebook installs that fork: no placeholder for the user to edit, and
    # nothing outside the checkout (a user's clone has no ../shared).
    text = "\n".join(cell.source for cell in nb.cells)
    assert "YOUR-ORG" not in text and "shared" not in text
    assert 'jax.default_backend() == "cpu"' in text, f"{name} must warn when it falls back to the CPU"


def _execute(name, tmp_path, monkeypatch):
    pytest.importorskip("nbclient", reason="needs the notebooks extra: pip install -e '.[notebooks]'")
    pytest.importorskip("ipykernel", reason="needs the notebooks extra: pip install -e '.[notebooks]'")
    pytest.importorskip("matplotlib", reason="needs the notebooks extra: pip install -e '.[notebooks]'")
    from nbclient import NotebookClient

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("ADAIN_JAX_SMOKE", "1")
    monkeypatch.setenv("ADAIN_JAX_SMOKE_DIR", str(work))
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend turns figures into outputs
    nb = _read(name)
    # "python3" is ipykernel's spec; jupyter_client starts it with this interpreter (sys.executable),
    # so the kernel sees the same environment as the tests. The cwd is notebooks/, as in Jupyter.
    client = NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.perf_counter()
    try:
        client.execute()
    finally:
        elapsed = time.perf_counter() - start
        nbformat.write(nb, tmp_path / name)  # the executed copy, for a look after a failure
        print(f"{name}: executed in {elapsed:.1f} s (executed copy: {tmp_path / name})")
    return nb, work, elapsed


def _text(nb):
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.output_type == "stream":
                parts.append(out.text)
            elif "data" in out and "text/plain" in out.data:
                parts.append(out.data["text/plain"])
    return "\n".join(parts)


def _images(nb):
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def _check_common(nb):
    text = _text(nb)
    assert "mode: SMOKE (CI)" in text
    assert f"python: {sys.executable}" in text, "the kernel must run the interpreter running the tests"
    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.output_type == "error"]
    assert not errors
    return text


def test_stylize_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    nb, work, elapsed = _execute("stylize.ipynb", tmp_path, monkeypatch)
    text = _check_common(nb)
    assert "stylize on a batch of" in text
    assert _images(nb) >= 6, "every section shows its grid"  # batch, alpha, 2x interpolation, colour, mask
    written = {p.name for p in (work / "outputs" / "notebook").iterdir()}
    assert {"batch_grid.jpg", "alpha_strip.jpg", "interpolation.jpg", "preserve_color.jpg", "mask.jpg"} <= written
    # Smoke mode runs the packaged model, and says which model it is.
    assert "model: the packaged model adain-jax-open" in text and "RANDOM" not in text


def test_train_notebook_runs_in_smoke_mode(tmp_path, monkeypatch):
    nb, work, elapsed = _execute("train.ipynb", tmp_path, monkeypatch)
    text = _check_common(nb)
    assert "Resuming from" in text, "the second training call must resume from the first one's checkpoint"
    workdir = work / "workdir"
    steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == 6  # 4 steps, then 2 more after resuming
    logged = [json.loads(line)["step"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert logged == [2, 4, 6]
    assert list((workdir / "tensorboard").iterdir()), "TensorBoard events"
    assert _images(nb) >= 4  # data preview, loss curves, sample grid, stylization


if __name__ == "__main__":
    # python tests/test_notebooks.py [NOTEBOOK ...]: strip outputs in place (default: both notebooks).
    for arg in sys.argv[1:] or [str(NOTEBOOKS / n) for n in NAMES]:
        nbformat.write(strip(nbformat.read(arg, as_version=4)), arg)
        print(f"stripped {arg}")
