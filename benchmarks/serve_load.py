"""A bounded load test of ``adain-jax serve`` on loopback: throughput and latency, memory, slow clients.

    python -m benchmarks.serve_load                          # starts `adain-jax serve` (random weights)
    python -m benchmarks.serve_load --serve-args="--max-batch 4" --json after.json
    python -m benchmarks.serve_load --url http://127.0.0.1:8000 --pid 1234

Every request is a real HTTP POST /api/stylize from this process's own client (the standard library,
one thread per simulated client), so the numbers include parsing, queueing, decoding and PNG encoding.
Cells: 1, 4 and 16 concurrent clients x {one popular style (the same bytes every time), all-different
styles (a new image per request, so nothing is cached)}, each a fixed number of requests (bounded:
no cell runs longer than its requests take). Then the server's resident memory (VmRSS from
/proc/PID/status) before and after ``--rss-requests`` more requests, and the slow-client probe:
``--slow-clients`` sockets that send half of their request headers and wait, while one normal
request is timed; the probe then reports how many of those sockets the server has closed.

The server runs on random weights (speed does not depend on the values). The printed table is the
one docs/webapp.md shows; nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import io
import json
import os
import pathlib
import select
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default=None, help="a running server (default: start adain-jax serve here)")
    p.add_argument("--pid", type=int, default=None, help="the running server's process id (for its RSS)")
    p.add_argument("--serve-args", default="", help="extra arguments for the started adain-jax serve")
    p.add_argument("--size", type=int, default=128, help="content and style images are SIZE x SIZE")
    p.add_argument("--requests", type=int, default=48, help="requests per cell (default: 48)")
    p.add_argument("--clients", default="1,4,16", help="concurrent clients per cell (default: 1,4,16)")
    p.add_argument("--rss-requests", type=int, default=500, help="requests between the two RSS readings")
    p.add_argument("--slow-clients", type=int, default=150, help="sockets holding half-sent headers (0: skip)")
    p.add_argument("--slow-wait", type=float, default=15.0, help="seconds to wait for the server to close them")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds for one HTTP exchange")
    p.add_argument("--first-only", action="store_true",
                   help="only start-up: seconds to ready and the first request's latency (cold or warm start)")
    p.add_argument("--json", type=pathlib.Path, default=None, help="also write the results here")
    return p.parse_args(argv)


def image_png(size: int, seed: int) -> bytes:
    """A smooth random picture as PNG bytes (as tests/conftest.write_image draws them)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(max(size // 8, 2), max(size // 8, 2), 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(small).resize((size, size), Image.BILINEAR).save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(fields) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = []
    for name, value in fields:
        if isinstance(value, tuple):
            filename, data = value
            head = (f'Content-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                    "Content-Type: application/octet-stream\r\n\r\n")
        else:
            data = str(value).encode()
            head = f'Content-Disposition: form-data; name="{name}"\r\n\r\n'
        chunks.append(f"--{boundary}\r\n{head}".encode() + data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    def __init__(self, host: str, port: int, timeout: float):
        self.host, self.port, self.timeout = host, port, timeout

    def exchange(self, method, path, body=None, headers=None) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def stylize(self, content: bytes, style: bytes) -> tuple[int, float]:
        body, content_type = multipart([("content", ("content.png", content)), ("style", ("style.png", style)),
                                        ("content_size", "0"), ("style_size", "0"), ("alpha", "0.8")])
        start = time.perf_counter()
        status, _ = self.exchange("POST", "/api/stylize", body, {"Content-Type": content_type})
        return status, time.perf_counter() - start


def compilations(client: Client) -> float | None:
    """The server's adain_jax_serve_compilations_total, or None when it has no /api/metrics."""
    status, body = client.exchange("GET", "/api/metrics")
    if status != 200:
        return None
    for line in body.decode().splitlines():
        if line.startswith("adain_jax_serve_compilations_total "):
            return float(line.split()[1])
    return None


def rss_mb(pid: int) -> float:
    """VmRSS of process ``pid`` in MB (/proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def start_server(serve_args: str, workdir: pathlib.Path, timeout: float = 900.0):
    """`adain-jax serve --port 0` on random weights; returns (process, host, port, seconds to ready)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ADAIN_JAX_CACHE_DIR": os.environ.get("ADAIN_JAX_CACHE_DIR", "off")}
    cmd = [sys.executable, "-m", "adain_jax.cli", "serve", "--port", "0", "--weights", "random",
           *shlex.split(serve_args)]
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=workdir)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 1.0)[0]:
            line = process.stdout.readline()
            if line.startswith("adain-jax serve: http://"):
                netloc = urllib.parse.urlsplit(line.split()[2]).netloc
                host, port = netloc.rsplit(":", 1)
                client = Client(host, int(port), 30)
                while time.monotonic() < deadline:  # ready: /api/health 200 (or /api/info where there is none)
                    status, _ = client.exchange("GET", "/api/health")
                    if status == 404:
                        status, _ = client.exchange("GET", "/api/info")
                    if status == 200:
                        return process, host, int(port), time.perf_counter() - start
                    time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the server did not start: {' '.join(cmd)}")


def run_cell(client: Client, clients: int, requests: int, content: bytes, styles) -> dict:
    """``requests`` POSTs from ``clients`` threads; ``styles(i)`` is the i-th request's style bytes."""
    def one(i):
        return client.stylize(content, styles(i))

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    latencies = sorted(t for _, t in results)
    statuses = sorted({s for s, _ in results})
    return {"clients": clients, "requests": requests, "statuses": statuses,
            "throughput": requests / wall, "p50": np.percentile(latencies, 50), "p99": np.percentile(latencies, 99)}


def slow_client_probe(client: Client, count: int, wait: float, content: bytes, style: bytes) -> dict:
    """``count`` sockets send half a request's headers and hold; a normal request is timed meanwhile."""
    held = []
    for _ in range(count):
        sock = socket.create_connection((client.host, client.port), timeout=10)
        sock.sendall(b"POST /api/stylize HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-")
        held.append(sock)
    try:
        time.sleep(0.5)
        status, seconds = client.stylize(content, style)
        info_status, _ = client.exchange("GET", "/api/info")
        deadline = time.monotonic() + wait
        closed = 0
        while time.monotonic() < deadline:
            closed = sum(_closed_by_peer(s) for s in held)
            if closed == count:
                break
            time.sleep(0.5)
        return {"slow_clients": count, "stylize_status": status, "stylize_seconds": seconds,
                "info_status": info_status, "closed_by_server": closed, "closed_within_s": wait}
    finally:
        for sock in held:
            sock.close()


def _closed_by_peer(sock: socket.socket) -> bool:
    try:
        readable = select.select([sock], [], [], 0)[0]
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def machine() -> str:
    import jax

    from adain_jax import cpuinfo

    return f"{cpuinfo.name()}, {os.cpu_count()} cores visible, JAX backend {jax.default_backend()}"


def markdown(results: dict) -> str:
    lines = [(f"machine: {results['machine']}; load average {results['load']}; "
              f"images {results['size']}x{results['size']}; server args: `{results['serve_args'] or '(defaults)'}`"), ""]
    if results.get("cells"):
        lines += ["| styles | clients | requests | statuses | req/s | p50 (s) | p99 (s) |", "|---|---|---|---|---|---|---|"]
    for row in results.get("cells", []):
        lines.append(f"| {row['styles']} | {row['clients']} | {row['requests']} | {row['statuses']} | "
                     f"{row['throughput']:.2f} | {row['p50']:.3f} | {row['p99']:.3f} |")
    lines.append("")
    if "first_request_s" in results:
        compiled = results.get("first_request_compilations")
        lines.append(f"start to ready: {results['ready_s']:.1f} s; first request after ready: "
                     f"{results['first_request_s']:.2f} s"
                     + ("" if compiled is None else f" ({compiled:g} programs compiled during it)")
                     + f"; a second one (new style, same size): {results['second_request_s']:.2f} s")
    if "rss" in results:
        r = results["rss"]
        lines.append(f"RSS over {r['requests']} requests ({r['clients']} clients, popular and new styles): "
                     f"{r['before_mb']:.0f} MB -> {r['after_mb']:.0f} MB ({r['after_mb'] - r['before_mb']:+.1f} MB); "
                     f"statuses {r['statuses']}")
    if "slow" in results:
        s = results["slow"]
        lines.append(f"{s['slow_clients']} slow clients holding half-sent headers: a normal stylize answered "
                     f"{s['stylize_status']} in {s['stylize_seconds']:.2f} s (GET /api/info {s['info_status']}); "
                     f"{s['closed_by_server']} of them closed by the server within {s['closed_within_s']:g} s")
    return "\n".join(lines)


def measure(args, client: Client, pid, results: dict, content: bytes, popular: bytes) -> None:
    """The cells, the RSS over ``--rss-requests`` and the slow-client probe, into ``results``."""
    fresh = iter(range(1000, 10**9))  # a new picture, never seen by the server, per request
    cells = []
    for name, styles in (("one popular", lambda i: popular),
                         ("all different", lambda i: image_png(args.size, next(fresh)))):
        for clients in map(int, args.clients.split(",")):
            n = max(args.requests // 2, clients) if clients == 1 else args.requests
            row = run_cell(client, clients, n, content, styles)
            row["styles"] = name
            cells.append(row)
            print(f"{name:>13} x {clients:>2}: {row['throughput']:.2f} req/s, p50 {row['p50']:.3f} s, "
                  f"p99 {row['p99']:.3f} s, statuses {row['statuses']}", flush=True)
    results["cells"] = cells
    if pid is not None and args.rss_requests:
        before = rss_mb(pid)
        row = run_cell(client, 8, args.rss_requests, content,
                       lambda i: popular if i % 2 else image_png(args.size, next(fresh)))
        results["rss"] = {"requests": args.rss_requests, "clients": 8, "before_mb": before,
                          "after_mb": rss_mb(pid), "statuses": row["statuses"]}
    if args.slow_clients:
        results["slow"] = slow_client_probe(client, args.slow_clients, args.slow_wait, content, popular)


def main(argv=None) -> int:
    args = parse_args(argv)
    results: dict = {"size": args.size, "serve_args": args.serve_args, "machine": machine(),
                     "load": " ".join(f"{v:.1f}" for v in os.getloadavg())}
    process = None
    with tempfile.TemporaryDirectory(prefix="serve-load-") as workdir:
        try:
            if args.url is None:
                process, host, port, results["ready_s"] = start_server(args.serve_args, pathlib.Path(workdir))
                pid = process.pid
            else:
                netloc = urllib.parse.urlsplit(args.url).netloc
                host, port = netloc.rsplit(":", 1)
                port, pid = int(port), args.pid
            client = Client(host, int(port), args.timeout)
            content, popular = image_png(args.size, 1), image_png(args.size, 2)
            compiled = compilations(client)
            status, seconds = client.stylize(content, popular)
            if status != 200:
                raise RuntimeError(f"the first request answered {status}")
            results["first_request_s"] = seconds
            if compiled is not None:
                results["first_request_compilations"] = compilations(client) - compiled
            # A second request of the same size with a new style: what the first costs without compiling.
            results["second_request_s"] = client.stylize(content, image_png(args.size, 3))[1]
            if not args.first_only:
                measure(args, client, pid, results, content, popular)
        finally:
            if process is not None:
                process.terminate()
                try:
                    process.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                results["exit_code"] = process.returncode
    table = markdown(results)
    print(table)
    if args.json is not None:
        args.json.write_text(json.dumps({**results, "table": table}, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
