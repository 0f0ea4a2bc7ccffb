"""`adain-jax stylize-dataset`: mirrored tree, seeded style choice, unreadable files, process shares,
resume after SIGKILL."""

import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from adain_jax import cli
from adain_jax.cli import stylize_dataset

from helpers import ROOT, write_image


def make_tree(root, count, seed=0):
    """``count`` content images in nested class folders (same size, so one compiled program)."""
    rels = []
    for i in range(count):
        rel = pathlib.Path(f"class{i % 3}") / ("sub" if i % 5 == 4 else "") / f"img{i:03d}.{'png' if i % 2 else 'jpg'}"
        write_image(root / rel, 24, 32, seed=seed + i)
        rels.append(rel)
    return rels


@pytest.fixture(scope="module")
def styles(tmp_path_factory):
    folder = tmp_path_factory.mktemp("styles")
    for i in range(3):
        write_image(folder / f"s{i}.png", 24, 24, seed=100 + i)
    return folder


def command(weights_dir, content, styles, output, *extra):
    return ["stylize-dataset", "--weights", str(weights_dir), "--content", str(content), "--style", str(styles),
            "--output", str(output), "--content-size", "0", "--style-size", "0", "--ext", "png", *map(str, extra)]


def tree(root):
    """Relative path -> bytes of every file under root (hidden ones included)."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_mirrors_the_tree_lists_unreadable_files_and_keeps_going(weights_dir, styles, tmp_path, capsys):
    content = tmp_path / "content"
    rels = make_tree(content, 5)
    (content / "class1" / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (content / "class1" / "notes.txt").write_text("not an image")
    status = cli.main(command(weights_dir, content, styles, tmp_path / "out"))
    out = capsys.readouterr().out
    assert status == 1
    assert "wrote 5 image(s)" in out and "1 failed" in out and "broken.jpg" in out
    assert sorted(tree(tmp_path / "out")) == sorted(r.with_suffix(".png").as_posix() for r in rels)
    with Image.open(tmp_path / "out" / rels[0].with_suffix(".png")) as im:
        assert im.size == (32, 24)


def test_the_style_is_a_seeded_function_of_the_relative_path():
    paths = [pathlib.Path(f"n{i // 10}/img{i}.JPEG") for i in range(300)]
    chosen = [stylize_dataset.choose_style(p, 7, seed=0) for p in paths]
    assert set(chosen) == set(range(7))  # every style is used
    assert chosen == [stylize_dataset.choose_style(pathlib.PurePosixPath(p.as_posix()), 7, seed=0) for p in paths]
    other = [stylize_dataset.choose_style(p, 7, seed=1) for p in paths]
    assert np.mean(np.asarray(chosen) == np.asarray(other)) < 0.5  # the seed changes the draw
    # independent of the interpreter's hash seed and of the order or share of the files
    code = ("import pathlib; from adain_jax.cli import stylize_dataset as d; "
            "print([d.choose_style(pathlib.Path(f'n{i // 10}/img{i}.JPEG'), 7, 0) for i in range(299, -1, -1)])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env=dict(os.environ, PYTHONHASHSEED="123"), timeout=120)
    assert eval(proc.stdout) == chosen[::-1]


def test_two_processes_together_write_exactly_what_one_writes(weights_dir, styles, tmp_path):
    content = tmp_path / "content"
    make_tree(content, 7)
    assert cli.main(command(weights_dir, content, styles, tmp_path / "one")) == 0
    shares = []
    for pid in (0, 1):
        out = tmp_path / f"part{pid}"
        assert cli.main(command(weights_dir, content, styles, out, "--process-id", pid, "--num-processes", 2)) == 0
        shares.append(tree(out))
    assert shares[0] and shares[1] and not set(shares[0]) & set(shares[1])
    assert {**shares[0], **shares[1]} == tree(tmp_path / "one")
    # the same relative paths under another root pick the same styles
    shutil.copytree(content, tmp_path / "moved" / "tree")
    assert cli.main(command(weights_dir, tmp_path / "moved" / "tree", styles, tmp_path / "moved_out")) == 0
    assert tree(tmp_path / "moved_out") == tree(tmp_path / "one")


def test_bad_process_arguments_fail_before_any_work(weights_dir, styles, tmp_path, capsys):
    content = tmp_path / "content"
    make_tree(content, 1)
    assert cli.main(command(weights_dir, content, styles, tmp_path / "out", "--process-id", 2,
                            "--num-processes", 2)) == 2
    assert "--process-id" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_a_run_killed_with_sigkill_resumes_to_the_uninterrupted_result(weights_dir, styles, tmp_path):
    content = tmp_path / "content"
    rels = make_tree(content, 40)
    expected_names = sorted(r.with_suffix(".png").as_posix() for r in rels)
    env = dict(os.environ, ADAIN_JAX_CACHE_DIR=str(tmp_path / "xla"), JAX_PLATFORMS="cpu")
    argv = [sys.executable, "-m", "adain_jax.cli", *command(weights_dir, content, styles, tmp_path / "out")]

    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not any((tmp_path / "out").rglob("*.png")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("*.png")}
    assert 0 < len(before) < len(rels), "the kill did not land mid-run"

    resumed = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"{len(before)} already written" in resumed.stderr
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing written twice
    assert sorted(tree(tmp_path / "out")) == expected_names  # every output, no temporary leftovers

    assert cli.main(command(weights_dir, content, styles, tmp_path / "straight")) == 0
    assert tree(tmp_path / "out") == tree(tmp_path / "straight")


@pytest.mark.slow
def test_two_real_processes_with_jax_distributed_split_the_files(weights_dir, styles, tmp_path):
    import socket

    content = tmp_path / "content"
    make_tree(content, 6)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = [subprocess.Popen([sys.executable, "-m", "adain_jax.cli",
                               *command(weights_dir, content, styles, tmp_path / "multi", "--distributed",
                                        "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", 2,
                                        "--process-id", i)],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in results]
    assert "process 0 of 2" in results[0][1] and "process 1 of 2" in results[1][1]
    assert cli.main(command(weights_dir, content, styles, tmp_path / "single")) == 0
    assert tree(tmp_path / "multi") == tree(tmp_path / "single")
