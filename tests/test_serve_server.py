"""`adain_jax.serve.server`: slow or idle clients cannot starve real ones, and SIGTERM stops the
command gracefully (the request in flight finishes, nothing is left in the temporary folder, exit 0).

Loopback only; every wait is bounded and generous (a loaded 2-core machine), and no speed is asserted.
"""

from __future__ import annotations

import http.client
import os
import select
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image

from adain_jax.serve import server as server_lib
from adain_jax.serve.app import create_app

from helpers import ROOT, write_image
from test_serve import TIMEOUT, LocalServer, exchange, multipart, pixels, post, read

SLOW_CLIENTS = 150
HEADER_TIMEOUT = 2.0


def closed_by_server(sock: socket.socket) -> bool:
    """True once the server has closed its end (whatever it sent before closing is read and dropped)."""
    try:
        while select.select([sock], [], [], 0)[0]:
            if sock.recv(65536) == b"":
                return True
        return False
    except OSError:  # reset by the server
        return True


def test_clients_holding_half_sent_headers_neither_block_requests_nor_stay_open(random_weights, tmp_path):
    content = read(write_image(tmp_path / "c.png", 40, 48, seed=1))
    style = read(write_image(tmp_path / "s.png", 32, 32, seed=2))
    fields = [("content", content), ("style", style), ("content_size", "0"), ("style_size", "0")]
    app = create_app(random_weights, description="test", is_random=False, max_size=64, queue_size=4)
    local = LocalServer(app, server_lib.Settings(header_timeout=HEADER_TIMEOUT)).start()
    held = []
    try:
        assert post(local.port, fields)[0] == 200  # compiles, so the request below takes its usual time
        for _ in range(SLOW_CLIENTS):  # far more than the 2 * queue + 16 requests the app lets in at once
            sock = socket.create_connection(("127.0.0.1", local.port), timeout=30)
            sock.sendall(b"POST /api/stylize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-")
            held.append(sock)
        status, _, body = post(local.port, fields)
        assert status == 200, body
        assert exchange(local.port, "GET", "/api/health")[0] == 200
        deadline = time.monotonic() + HEADER_TIMEOUT + 60
        open_ = list(held)
        while open_ and time.monotonic() < deadline:
            open_ = [s for s in open_ if not closed_by_server(s)]
            time.sleep(0.2)
        assert not open_, f"{len(open_)} of {SLOW_CLIENTS} slow sockets still open"
    finally:
        for sock in held:
            sock.close()
        local.stop()


def test_sigterm_finishes_the_request_in_flight_leaves_no_temporary_file_and_exits_0(tmp_path):
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAIN_JAX_CACHE_DIR": "off", "TMPDIR": str(temp)}
    process = subprocess.Popen([sys.executable, "-m", "adain_jax.cli", "serve", "--port", "0", "--weights",
                                "random", "--warm", "32x32", "--max-size", "64"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    conn = None
    try:
        port = None
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and process.poll() is None:
            if not select.select([process.stdout], [], [], 1.0)[0]:
                continue
            line = process.stdout.readline()
            if line.startswith("adain-jax serve: http://127.0.0.1:"):
                port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
            elif line.startswith("adain-jax serve: ready") and port is not None:
                break
        else:
            raise AssertionError("the server did not get ready: " + process.stderr.read()[-2000:])

        # Over 1 MiB, so the multipart parser spools it to a temporary file; 32x32 after resizing, as warmed.
        noise = np.random.default_rng(0).integers(0, 256, (640, 640, 3), np.uint8)
        Image.fromarray(noise).save(tmp_path / "noise.png", compress_level=0)
        style = write_image(tmp_path / "style.png", 32, 32, seed=2)
        body, content_type = multipart([("content", read(tmp_path / "noise.png")), ("style", read(style)),
                                        ("content_size", "32"), ("style_size", "0")])
        assert len(body) > 2**20
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.putrequest("POST", "/api/stylize")
        conn.putheader("Content-Type", content_type)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders()
        half = len(body) // 2
        conn.send(body[:half])  # in flight: its headers are in, half of its body

        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # it stops accepting new connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
            except OSError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the server still accepts connections after SIGTERM")

        conn.send(body[half:])
        response = conn.getresponse()
        answer = response.read()
        assert response.status == 200, answer
        assert pixels(answer).shape == (32, 32, 3)
        assert process.wait(timeout=120) == 0
        out, errors = process.stdout.read(), process.stderr.read()
        assert "stopped" in out and "Traceback" not in errors, errors
        assert list(temp.iterdir()) == []
    finally:
        if conn is not None:
            conn.close()
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        process.stdout.close()
        process.stderr.close()
