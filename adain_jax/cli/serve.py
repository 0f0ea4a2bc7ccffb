"""``adain-jax serve``: the web page and HTTP API of `adain_jax.serve` on a local port.

    adain-jax serve                      # http://127.0.0.1:8000/, weights from $ADAIN_JAX_WEIGHTS or weights/flax
    adain-jax serve --port 0 --images ../shared/images

Binds to 127.0.0.1 unless --host says otherwise (and warns then: there is no authentication).
Without usable weights it runs on random weights and the page says RANDOM WEIGHTS, as the demo does.
"""

from __future__ import annotations

import argparse
import pathlib
import socket
import sys

from adain_jax.cli import options

HELP = "a local web page and HTTP API for stylizing images"
DESCRIPTION = ("Serve a web page with every control (content, several styles with interpolation weights, alpha, "
               "colour preservation, a mask, sizes) and POST /api/stylize, which answers a PNG equal to "
               "adain-jax stylize's with the same options. Binds to 127.0.0.1 unless --host says otherwise.")
EPILOG = """examples:
  adain-jax serve --weights weights/flax            # then open http://127.0.0.1:8000/
  curl -F content=@cornell.jpg -F style=@woman_with_hat_matisse.jpg -F alpha=0.8 \\
       -o out.png http://127.0.0.1:8000/api/stylize
"""


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be in 0..65535 (0 picks a free one), got {value}")
    return value


def _megabytes(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the "
                             "server, which has no authentication, to the network)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--weights", type=pathlib.Path, metavar="DIR",
                        default=options.default_weights(),
                        help="weights directory (default: $ADAIN_JAX_WEIGHTS or weights/flax); random weights, "
                             "labelled as such on the page, if none are found")
    parser.add_argument("--images", type=pathlib.Path, default=None, metavar="DIR",
                        help="example images offered on the page: a folder with content/, style/ and mask/ "
                             f"subfolders (default: {options.DEFAULT_IMAGES} when it exists)")
    parser.add_argument("--max-size", type=options.positive, default=1024, metavar="N",
                        help="largest shorter side of a resized content or style image, in pixels (default: 1024)")
    parser.add_argument("--max-upload-mb", type=_megabytes, default=20, metavar="MB",
                        help="largest request body in MiB (default: 20); larger ones are answered 413")
    parser.add_argument("--queue", type=options.positive, default=32, metavar="N",
                        help="requests that may wait for the stylizer before new ones get 503 (default: 32)")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, backlog=128)


def exposure_warning(host: str) -> str:
    return (f"WARNING: listening on {host}: anyone who can reach this machine can use the server (there is no "
            "authentication). Leave --host at 127.0.0.1 to keep it to this machine.")


def run(args) -> int:
    try:
        import uvicorn

        from adain_jax.serve.app import create_app, is_loopback
    except ImportError as e:
        print(f"error: adain-jax serve needs starlette, uvicorn and python-multipart ({e}); "
              "install them with: pip install 'adain-jax[serve]'", file=sys.stderr)
        return 2

    images = args.images
    if images is not None and not images.is_dir():
        print(f"error: --images {images}: not a directory", file=sys.stderr)
        return 2
    if images is None and options.DEFAULT_IMAGES.is_dir():
        images = options.DEFAULT_IMAGES
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    loopback = is_loopback(args.host)
    if not loopback:
        print(exposure_warning(args.host), file=sys.stderr)
    weights, description, is_random = options.weights_or_random(args.weights)
    app = create_app(weights, description=description, is_random=is_random, max_size=args.max_size,
                     max_upload_mb=args.max_upload_mb, queue_size=args.queue, images_dir=images,
                     loopback_only=loopback)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"adain-jax serve: http://{shown}:{port}/ ({description}; Ctrl-C stops)", flush=True)
    # Connections beyond this get 503 from uvicorn: each one may hold an upload in memory while parsed.
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", server_header=False, lifespan="on",
                                           limit_concurrency=2 * args.queue + 16, timeout_graceful_shutdown=30))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn has shut down cleanly, then re-raises Ctrl-C for the caller
        pass
    print("adain-jax serve: stopped", flush=True)
    return 0
