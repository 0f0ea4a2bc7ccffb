"""`adain-jax serve`'s app: the API answers what `adain-jax stylize` writes, every bad input gets its
status and message, 16 concurrent clients (sharing batches) get the bytes each gets alone, programs
are compiled once, health says ready only once the warm sizes are compiled, a slow body is cut at its
deadline, nothing is left in temporary folders, and the command binds to loopback and labels random
weights.

The server runs in this process (`adain_jax.serve.server` on a thread, a free loopback port, always
stopped), so the tests can look at the jitted functions' caches; requests go over real HTTP with the
standard library.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import http.client
import io
import json
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

import numpy as np
import pytest
from helpers import ROOT, write_image
from PIL import Image

from adain_jax import cli, pretrained, transfer
from adain_jax.cli import serve as serve_cli
from adain_jax.io import images as image_io
from adain_jax.io import weights as weights_lib
from adain_jax.serve import request as request_lib
from adain_jax.serve import server as server_lib
from adain_jax.serve import worker as worker_lib
from adain_jax.serve.app import create_app
from benchmarks.serve_load import multipart

TIMEOUT = 120  # seconds for one HTTP exchange; a first request compiles on a loaded 2-core machine
MAX_SIZE = 64  # the test server's --max-size, so the limits are cheap to reach
MAX_UPLOAD_MB = 2


def stylize_scope(content_type: str) -> dict:
    """The ASGI scope of a POST /api/stylize from loopback, for driving the app without a server."""
    return {"type": "http", "method": "POST", "path": "/api/stylize", "raw_path": b"/api/stylize",
            "query_string": b"", "root_path": "", "scheme": "http", "http_version": "1.1",
            "server": ("127.0.0.1", 1), "client": ("127.0.0.1", 2),
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", content_type.encode())]}


def exchange(port, method, path, body=None, headers=None, timeout=TIMEOUT):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def post(port, fields, headers=None):
    body, content_type = multipart(fields)
    return exchange(port, "POST", "/api/stylize", body, {"Content-Type": content_type, **(headers or {})})


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


class LocalServer:
    """The app's HTTP server (`adain_jax.serve.server`) on a thread, on a free 127.0.0.1 port; `stop`
    always ends it. The socket listens from the start, so a request sent early waits for the server."""

    def __init__(self, app, settings=None):
        self.app = app
        self.server = server_lib.Server(app, serve_cli.bind("127.0.0.1", 0), settings or server_lib.Settings())
        self.port = self.server.port
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self):
        self.thread.start()
        if not self.server.started.wait(60):
            raise RuntimeError("the test server did not start")
        return self

    def stop(self):
        self.server.stop()
        self.thread.join(60)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve_images")
    files = {
        "content": write_image(root / "content.png", 40, 48, seed=1),
        "style": write_image(root / "style.png", 32, 32, seed=2),
        "style2": write_image(root / "style2.png", 32, 32, seed=3),
        "style_wide": write_image(root / "style_wide.png", 32, 40, seed=4),
        "mask": root / "mask.png",
        "labels": root / "labels.png",
        "notes": root / "notes.txt",
    }
    mask = np.zeros((40, 48), np.uint8)
    mask[:, :20] = 255
    Image.fromarray(mask, "L").save(files["mask"])
    Image.fromarray(np.full((40, 48), 7, np.uint8), "L").save(files["labels"])
    files["notes"].write_text("not an image\n")
    return files


@pytest.fixture(scope="module")
def temp_root(tmp_path_factory):
    """The process's temporary folder while the server runs, to prove nothing is left in it."""
    folder = tmp_path_factory.mktemp("server_tmp")
    saved = tempfile.tempdir
    tempfile.tempdir = str(folder)
    yield folder
    tempfile.tempdir = saved


@pytest.fixture(scope="module")
def server(weights_dir, temp_root):
    weights = weights_lib.load_weights(weights_dir)
    # Batches of 4, waiting up to 50 ms for company: the 16 concurrent clients below share batches.
    app = create_app(weights, description=f"weights from {weights_dir}", is_random=False, max_size=MAX_SIZE,
                     max_upload_mb=MAX_UPLOAD_MB, queue_size=32, max_batch=4, batch_wait=0.05)
    local = LocalServer(app).start()
    try:
        yield local
    finally:
        local.stop()


def read(path) -> tuple[str, bytes]:
    path = pathlib.Path(path)
    return path.name, path.read_bytes()


def cli_png(weights_dir, out_dir, content, styles, *extra) -> np.ndarray:
    status = cli.main(["stylize", "--weights", str(weights_dir), "--content", str(content),
                       "--style", ",".join(map(str, styles)), "--output", str(out_dir), "--ext", "png", *extra])
    assert status == 0
    (written,) = pathlib.Path(out_dir).glob("*.png")
    return np.asarray(Image.open(written).convert("RGB")).astype(np.int16)


CASES = {
    "alpha": ({"alpha": "0.5", "content_size": "0", "style_size": "0"}, ["style"], None),
    "resized": ({"content_size": "32", "style_size": "24"}, ["style"], None),
    "interpolation": ({"style_weights": "0.3,0.7", "content_size": "0", "style_size": "0"}, ["style", "style2"], None),
    "preserve_color": ({"preserve_color": "true", "alpha": "0.8", "content_size": "0", "style_size": "0"},
                       ["style"], None),
    "mask": ({"content_size": "0", "style_size": "0"}, ["style", "style2"], "mask"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_api_png_equals_adain_jax_stylize_with_the_same_options(server, weights_dir, images, tmp_path, case):
    options, styles, mask = CASES[case]
    fields = [("content", read(images["content"]))] + [("style", read(images[s])) for s in styles]
    fields += [(k, v) for k, v in options.items()]
    if mask:
        fields.append(("mask", read(images[mask])))
    status, headers, body = post(server.port, fields)
    assert status == 200, body
    assert headers["content-type"] == "image/png"

    flags = []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        flags += [flag] if value == "true" else [flag, value]
    if mask:
        flags += ["--mask", str(images[mask])]
    expected = cli_png(weights_dir, tmp_path / "cli", images["content"], [images[s] for s in styles], *flags)
    got = pixels(body)
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1  # within 1/255


def png_with_size(width, height) -> bytes:
    """A PNG whose header claims width x height, with almost no data (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + chunk(b"IEND", b""))


def bad_requests(images):
    content, style, style2 = read(images["content"]), read(images["style"]), read(images["style2"])
    small = {"content_size": "0", "style_size": "0"}
    png = images["content"].read_bytes()
    write_image(images["content"].parent / "big.png", 200, 240, seed=9)
    big_name, big_bytes = read(images["content"].parent / "big.png")
    return {
        "no content": ([("style", style)], 400, "missing the 'content' image"),
        "no style": ([("content", content)], 400, "missing the 'style' image"),
        "two contents": ([("content", content), ("content", content), ("style", style)], 400, "one 'content'"),
        "content not a file": ([("content", "hello"), ("style", style)], 400, "must be a file upload"),
        "text file": ([("content", read(images["notes"])), ("style", style)], 415,
                      "content (notes.txt): not an image file that can be read"),
        "empty file": ([("content", ("empty.png", b"")), ("style", style)], 415, "content (empty.png)"),
        "truncated image": ([("content", ("cut.png", png[: len(png) // 2])), ("style", style)], 400,
                            "content (cut.png): corrupt or truncated image data"),
        "decompression bomb": ([("content", ("bomb.png", png_with_size(20000, 20000))), ("style", style)], 413,
                               "over Pillow's decompression-bomb limit"),
        "alpha out of range": ([("content", content), ("style", style), ("alpha", "1.5")], 400,
                               "alpha must be in [0, 1], got 1.5"),
        "alpha not a number": ([("content", content), ("style", style), ("alpha", "lots")], 400,
                               "alpha must be a number"),
        "negative size": ([("content", content), ("style", style), ("content_size", "-1")], 400,
                          "content_size must be >= 0"),
        "size over --max-size": ([("content", content), ("style", style), ("content_size", "65")], 413,
                                 f"content_size 65 is over this server's limit of {MAX_SIZE}"),
        "default size over --max-size": ([("content", content), ("style", style)], 413,
                                         f"content_size 512 is over this server's limit of {MAX_SIZE}"),
        "original size over --max-size": ([("content", (big_name, big_bytes)), ("style", style), *small.items()],
                                          413, "content (big.png): 240x200 after resizing is over"),
        "unknown field": ([("content", content), ("style", style), ("strength", "1")], 400,
                          "unknown field 'strength'"),
        "repeated alpha": ([("content", content), ("style", style), ("alpha", "1"), ("alpha", "0")], 400,
                           "'alpha' was given 2 times"),
        "bad flag": ([("content", content), ("style", style), ("preserve_color", "maybe")], 400,
                     "preserve_color must be true or false"),
        "two styles, no weights": ([("content", content), ("style", style), ("style", style2), *small.items()], 400,
                                   "give style_weights (interpolation) or a mask"),
        "weights count": ([("content", content), ("style", style), ("style", style2), ("style_weights", "1,2,3"),
                           *small.items()], 400, "style_weights has 3 values for 2 styles"),
        "weights all zero": ([("content", content), ("style", style), ("style", style2), ("style_weights", "0,0")],
                             400, "non-negative and not all zero"),
        "weights and mask": ([("content", content), ("style", style), ("style", style2), ("style_weights", "1,1"),
                              ("mask", read(images["mask"]))], 400, "not both"),
        "mask with one style": ([("content", content), ("style", style), ("mask", read(images["mask"]))], 400,
                                "need at least two style images"),
        "label out of range": ([("content", content), ("style", style), ("style", style2), ("style", style),
                                ("mask", read(images["labels"])), *small.items()], 400,
                               "mask (labels.png): label values must be 0..2"),
        "mask not an image": ([("content", content), ("style", style), ("style", style2),
                               ("mask", read(images["notes"])), *small.items()], 415, "mask (notes.txt): not an image"),
        "preserve colour, unequal styles": ([("content", content), ("style", style),
                                             ("style", read(images["style_wide"])), ("style_weights", "1,1"),
                                             ("preserve_color", "on"), *small.items()], 400,
                                            "with preserve_color, combined styles must have the same size"),
        "crop with size 0": ([("content", content), ("style", style), ("crop", "true"), *small.items()], 400,
                             "crop needs content_size and style_size > 0"),
    }


def test_each_bad_input_gets_its_status_and_message_and_the_server_keeps_going(server, images):
    for name, (fields, status, message) in bad_requests(images).items():
        if name != "default size over --max-size" and not any(k == "content_size" for k, _ in fields):
            fields = fields + [("content_size", "0"), ("style_size", "0")]  # under the test server's --max-size
        got, headers, body = post(server.port, fields)
        assert headers["content-type"] == "application/json", name
        error = json.loads(body)["error"]
        assert (got, message in error) == (status, True), f"{name}: {got} {error}"
    ok, _, _ = post(server.port, [("content", read(images["content"])), ("style", read(images["style"])),
                                  ("content_size", "0"), ("style_size", "0")])
    assert ok == 200


def test_a_failure_inside_the_stylizer_answers_500_and_the_next_request_works(server, images, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    fields = [("content", read(images["content"])), ("style", read(images["style"])),
              ("content_size", "0"), ("style_size", "0")]
    monkeypatch.setattr(transfer, "stylize_with_moments", broken)
    status, _, body = post(server.port, fields)
    assert status == 500 and "RuntimeError: simulated failure" in json.loads(body)["error"]
    monkeypatch.undo()
    assert post(server.port, fields)[0] == 200


def test_http_level_refusals_answer_json(server, images):
    port = server.port
    cases = [
        (("GET", "/api/stylize", None, {}), 405, "Method Not Allowed"),
        (("GET", "/nowhere", None, {}), 404, "Not Found"),
        (("POST", "/api/stylize", b'{"content": "x"}', {"Content-Type": "application/json"}), 415,
         "send multipart/form-data"),
        (("POST", "/api/stylize", b"--x\r\nnonsense", {"Content-Type": "multipart/form-data; boundary=y"}), 400, ""),
        (("GET", "/api/info", None, {"Host": "attacker.example"}), 400, "unexpected Host header"),
        (("POST", "/api/stylize", *multipart([("content", read(images["content"]))])[:1],
          {"Origin": "http://attacker.example"}), 403, "cross-origin request from http://attacker.example refused"),
    ]
    for (method, path, body, headers), status, message in cases:
        got, response_headers, answer = exchange(port, method, path, body, headers)
        assert got == status, (path, answer)
        assert message in json.loads(answer)["error"]
        assert "default-src 'none'" in response_headers["content-security-policy"]


def test_an_announced_upload_over_the_limit_is_refused_before_it_is_read(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=TIMEOUT)
    try:
        conn.putrequest("POST", "/api/stylize")
        conn.putheader("Content-Type", "multipart/form-data; boundary=b")
        conn.putheader("Content-Length", str(10**9))
        conn.endheaders()  # no body is sent: the answer must not wait for it
        response = conn.getresponse()
        assert response.status == 413
        assert f"at most {MAX_UPLOAD_MB:g} MiB" in json.loads(response.read())["error"]
    finally:
        conn.close()


def test_a_streamed_upload_is_cut_off_at_the_limit_with_413():
    """Chunked bodies carry no Content-Length: the cap is counted while reading (ASGI level, no sockets)."""
    app = create_app(None, description="none", is_random=False, max_upload_mb=1 / 1024)  # 1 KiB
    body, content_type = multipart([("content", ("c.png", b"\0" * 4096)), ("style", ("s.png", b"\0" * 10))])
    chunks = [body[i:i + 512] for i in range(0, len(body), 512)]
    sent = []

    async def receive():
        chunk = chunks.pop(0) if chunks else b""
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message):
        sent.append(message)

    scope = stylize_scope(content_type)
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413
    assert "upload too large" in json.loads(sent[1]["body"])["error"]
    assert chunks  # it stopped reading


def test_sixteen_concurrent_clients_all_get_correct_answers(server, images):
    content, style = read(images["content"]), read(images["style"])
    alphas = ("0.25", "0.5", "0.75", "1")

    def ask(alpha):
        return post(server.port, [("content", content), ("style", style), ("alpha", alpha),
                                  ("content_size", "0"), ("style_size", "0")])

    expected = {}
    for alpha in alphas:
        status, _, body = ask(alpha)
        assert status == 200
        expected[alpha] = pixels(body)
    assert not np.array_equal(expected["0.25"], expected["1"])  # the answers differ, so a mix-up would show
    requests = [alphas[i % len(alphas)] for i in range(16)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(ask, requests))
    for alpha, (status, _, body) in zip(requests, answers):
        assert status == 200, body
        assert np.array_equal(pixels(body), expected[alpha])


def test_a_second_request_of_a_size_reuses_the_compiled_programs(server, images):
    def ask(style, alpha):
        return post(server.port, [("content", read(images["content"])), ("style", read(images[style])),
                                  ("alpha", alpha), ("content_size", "0"), ("style_size", "0")])

    assert ask("style", "0.3")[0] == 200
    sizes = transfer.stylize_with_moments._cache_size(), transfer.style_moments._cache_size()
    assert ask("style2", "0.9")[0] == 200  # a new style and alpha, same sizes
    assert (transfer.stylize_with_moments._cache_size(), transfer.style_moments._cache_size()) == sizes


def test_a_large_upload_is_served_and_nothing_is_left_in_temporary_folders(server, images, temp_root, tmp_path):
    # Over 1 MiB, so the multipart parser spools it to a temporary file; with content_size 40 it has the
    # same shape as the small content, so nothing compiles.
    noise = np.random.default_rng(0).integers(0, 256, (600, 720, 3), np.uint8)
    path = tmp_path / "noise.png"
    Image.fromarray(noise).save(path, compress_level=0)
    assert 2**20 < path.stat().st_size < MAX_UPLOAD_MB * 2**20
    status, _, body = post(server.port, [("content", read(path)), ("style", read(images["style"])),
                                         ("content_size", "40"), ("style_size", "0")])
    assert status == 200 and pixels(body).shape == (40, 48, 3)
    status, _, _ = post(server.port, [("content", read(images["content"])), ("style", read(images["style"])),
                                      ("style", read(images["style2"])), ("mask", read(images["mask"])),
                                      ("content_size", "0"), ("style_size", "0")])
    assert status == 200
    assert list(temp_root.iterdir()) == []


def test_the_page_and_its_assets_load_nothing_from_outside(server):
    status, headers, page = exchange(server.port, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    html = page.decode()
    links = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert links and all(link.startswith("data:") or (link.startswith("/") and not link.startswith("//"))
                         for link in links), links
    assert re.findall(r"https?://[^\s<]*", html) == ["http://HOST/api/stylize"]  # the curl example's text
    for asset in ("/static/app.js", "/static/style.css"):
        status, _, body = exchange(server.port, "GET", asset)
        assert status == 200
        text = body.decode()
        assert not re.search(r"https?:|@import|url\(", text)  # no absolute URL, no imported CSS or fonts
    info = json.loads(exchange(server.port, "GET", "/api/info")[2])
    assert info["random_weights"] is False and info["max_size"] == MAX_SIZE


def test_the_queue_is_bounded_and_answers_503_when_full():
    worker = worker_lib.Worker(None, queue_size=1)  # not started: nothing leaves the queue
    job = request_lib.Job(request_lib.Upload("content", "c.png", b""), (request_lib.Upload("style", "s.png", b""),),
                          None, request_lib.Options())
    first = worker.submit(job)
    with pytest.raises(request_lib.RequestError) as busy:
        worker.submit(job)
    assert busy.value.status == 503 and "busy" in busy.value.message
    worker.stop()
    assert first.cancelled()


@pytest.mark.parametrize("width,height,size", [(48, 40, 32), (40, 48, 32), (729, 512, 256), (600, 800, 512),
                                               (50, 50, 7), (48, 40, 0)])
def test_resized_size_is_what_resize_shorter_side_gives(width, height, size):
    image = Image.new("RGB", (width, height))
    assert image_io.resized_size(width, height, size) == image_io.resize_shorter_side(image, size).size


def test_result_file_name_follows_adain_jax_stylize():
    up = request_lib.Upload
    job = request_lib.Job(up("content", "cornell.jpg", b""), (up("style", "la muse.jpg", b""),), None,
                          request_lib.Options())
    assert job.filename() == "cornell_stylized_la_muse.png"
    job = request_lib.Job(up("content", "../x/c.png", b""), (up("style 1", "a.jpg", b""), up("style 2", "b.jpg", b"")),
                          None, request_lib.Options(style_weights=(1.0, 1.0)))
    assert job.filename() == "c_interpolation.png"


def test_exposing_the_server_warns():
    assert "WARNING" in serve_cli.exposure_warning("0.0.0.0")
    from adain_jax.serve.app import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("127.0.0.1.attacker.example")  # a rebinding name is not an address


def serve_env() -> dict[str, str]:
    """The environment of a served command: this checkout, no compilation cache, no weights setting."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAIN_JAX_CACHE_DIR": "off"}
    env.pop("ADAIN_JAX_WEIGHTS", None)
    return env


@pytest.mark.parametrize("asked", ["random", None], ids=["weights-random", "default-weights"])
def test_the_command_serves_on_loopback_names_its_model_and_stops_cleanly(tmp_path, asked):
    """``--weights random`` is labelled RANDOM on every line and answer a person reads; without --weights
    (and no weights/flax in the working directory) the packaged model is served and named, and nothing
    says RANDOM."""
    if asked is None and not pretrained.available():
        pytest.skip("the packaged model (adain_jax/pretrained/weights.npz) is not in this checkout")
    weights = ["--weights", asked] if asked else []
    process = subprocess.Popen([sys.executable, "-m", "adain_jax.cli", "serve", "--port", "0", *weights,
                                "--warm", "none"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=serve_env(),
                               cwd=tmp_path)
    try:
        line = process.stdout.readline()
        assert line.startswith("adain-jax serve: http://127.0.0.1:"), line + process.stderr.read()
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        status, _, body = exchange(port, "GET", "/api/info", timeout=30)
        info = json.loads(body)
        assert status == 200
        if asked:
            assert "RANDOM WEIGHTS" in line and info["random_weights"] is True and "RANDOM WEIGHTS" in info["weights"]
        else:
            assert "adain-jax-open" in line and info["random_weights"] is False and "adain-jax-open" in info["weights"]
            assert "RANDOM" not in line + info["weights"]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
        errors = process.stderr.read()
        first = errors.splitlines()[0]
        expected = "model: RANDOM WEIGHTS" if asked else "model: the packaged model adain-jax-open"
        assert first.startswith(expected), errors
        assert "Traceback" not in errors and (asked or "RANDOM" not in errors)
        assert "stopped" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()


def test_the_command_refuses_missing_weights_in_one_line(tmp_path):
    """No fallback to random weights: a --weights that is not there is one error line, exit 2, and no
    server is ever announced."""
    missing = tmp_path / "missing"
    result = subprocess.run([sys.executable, "-m", "adain_jax.cli", "serve", "--port", "0", "--weights", str(missing),
                             "--warm", "none"], capture_output=True, text=True, env=serve_env(), cwd=tmp_path,
                            timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: {missing}: no such weights directory")
    assert result.stdout == "" and "RANDOM" not in result.stderr


def test_health_is_503_while_warming_then_200_and_the_warmed_size_compiles_nothing(weights_dir, images, monkeypatch):
    gate = threading.Event()
    warm = worker_lib.Worker.warm

    def gated_warm(self, sizes):  # holds the warm-up until the test has seen the 503
        assert gate.wait(TIMEOUT)
        warm(self, sizes)

    monkeypatch.setattr(worker_lib.Worker, "warm", gated_warm)
    content, style = images["content"], images["style"]  # 40x48 and 32x32
    app = create_app(weights_lib.load_weights(weights_dir), description="the test weights", is_random=False,
                     max_size=MAX_SIZE, max_batch=2, warm=((40, 48), (32, 32)))
    local = LocalServer(app).start()
    try:
        status, headers, body = exchange(local.port, "GET", "/api/health")
        answer = json.loads(body)
        assert (status, answer["status"]) == (503, "warming up") and "warming up" in answer["error"]
        assert headers["retry-after"] == "5"
        gate.set()
        deadline = time.monotonic() + TIMEOUT
        while status != 200 and time.monotonic() < deadline:
            time.sleep(0.1)
            status, _, body = exchange(local.port, "GET", "/api/health")
        answer = json.loads(body)
        assert status == 200 and answer["status"] == "ready"
        assert answer["backend"] == "cpu" and answer["devices"] and answer["weights"] == "the test weights"
        assert answer["queue_depth"] == 0 and answer["max_batch"] == 2 and answer["warm_sizes"] == ["40x48", "32x32"]
        sizes = transfer.stylize_with_moments._cache_size(), transfer.style_moments._cache_size()
        assert post(local.port, [("content", read(content)), ("style", read(style)),
                                 ("content_size", "0"), ("style_size", "0")])[0] == 200
        assert (transfer.stylize_with_moments._cache_size(), transfer.style_moments._cache_size()) == sizes
    finally:
        gate.set()
        local.stop()


def test_a_body_that_does_not_arrive_in_time_is_answered_408():
    """The deadline covers the whole body, however it trickles in (ASGI level, no sockets)."""
    app = create_app(None, description="none", is_random=False, body_timeout=0.2)
    body, content_type = multipart([("content", ("c.png", b"\0" * 100)), ("style", ("s.png", b"\0" * 10))])
    chunks = [body[:body.index(b"\0")]]  # up to the content file's data, which then never ends
    sent = []

    async def receive():
        if chunks:
            return {"type": "http.request", "body": chunks.pop(), "more_body": True}
        await asyncio.sleep(0.05)  # a byte every 50 ms: never idle, never done
        return {"type": "http.request", "body": b"\0", "more_body": True}

    async def send(message):
        sent.append(message)

    scope = stylize_scope(content_type)
    asyncio.run(asyncio.wait_for(app(scope, receive, send), 60))
    assert sent[0]["status"] == 408
    assert "took over 0.2 s" in json.loads(sent[1]["body"])["error"]


def test_warm_sizes_and_the_batch_default_of_the_command():
    assert serve_cli.warm_sizes("512x512,512X682") == ((512, 512), (512, 682))
    assert serve_cli.warm_sizes("none") == () and serve_cli.warm_sizes("") == ()
    for bad in ("512", "0x5", "axb"):
        with pytest.raises(argparse.ArgumentTypeError, match=r"HEIGHTxWIDTH|positive"):
            serve_cli.warm_sizes(bad)
    assert serve_cli.default_max_batch("cpu", 8) == 1
    assert serve_cli.default_max_batch("gpu", 1) == 4 and serve_cli.default_max_batch("gpu", 8) == 8
