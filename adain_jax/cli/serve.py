"""``adain-jax serve``: the web page and HTTP API of `adain_jax.serve` on a local port.

    adain-jax serve                      # http://127.0.0.1:8000/, the default weights (options.default_weights)
    adain-jax serve --port 0 --images DIR --warm none

Binds to 127.0.0.1 unless --host says otherwise (and warns then: there is no authentication).
Unusable weights are one ``error:`` line and exit status 2; random weights run only when asked for
(``--weights random``), and the page then says RANDOM WEIGHTS, as the demo's sheet does.
SIGINT or SIGTERM stops it gracefully (requests in flight finish, bounded) with exit status 0.
"""

from __future__ import annotations

import argparse
import pathlib
import socket
import sys
import threading
import time

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


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


# Content sizes compiled at start-up: the default content_size 512 on square, 4:3 landscape and 3:4
# portrait pictures (the shapes most uploads resize to).
DEFAULT_WARM = "512x512,512x682,682x512"


def _max_batch(text: str) -> int | str:
    return "auto" if text == "auto" else options.positive(text)


def warm_sizes(text: str) -> tuple[tuple[int, int], ...]:
    """``"512x512,512x682"`` -> ((512, 512), (512, 682)) as (height, width); "none" or "" -> ()."""
    if text.strip().lower() in ("", "none"):
        return ()
    sizes = []
    for item in text.split(","):
        try:
            height, width = (int(v) for v in item.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected HEIGHTxWIDTH sizes separated by commas (or none), "
                                             f"got {item!r}") from None
        if height < 1 or width < 1:
            raise argparse.ArgumentTypeError(f"sizes must be positive, got {item!r}")
        sizes.append((height, width))
    return tuple(sizes)


def default_max_batch(backend: str, devices: int) -> int:
    """``--max-batch auto``: 1 on CPU, where XLA already spreads one image over every core and a
    batch only adds the padding of lone requests (docs/webapp.md has the figures); on accelerators 4,
    or one image per device when there are more."""
    return 1 if backend == "cpu" else max(4, devices)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to bind (default: 127.0.0.1, this machine only; 0.0.0.0 exposes the "
                             "server, which has no authentication, to the network)")
    parser.add_argument("--port", type=_port, default=8000, help="port (default: 8000; 0 picks a free one)")
    options.add_weights_argument(parser, "'random' is labelled as such on the page")
    parser.add_argument("--images", type=pathlib.Path, default=None, metavar="DIR",
                        help="example images offered on the page: a folder with content/, style/ and mask/ "
                             "subfolders (default: $ADAIN_JAX_EXAMPLES, else the images packaged with adain-jax)")
    parser.add_argument("--max-size", type=options.positive, default=1024, metavar="N",
                        help="largest shorter side of a resized content or style image, in pixels (default: 1024)")
    parser.add_argument("--max-upload-mb", type=_positive, default=20, metavar="MB",
                        help="largest request body in MiB (default: 20); larger ones are answered 413")
    parser.add_argument("--queue", type=options.positive, default=32, metavar="N",
                        help="requests that may wait for the stylizer before new ones get 503 (default: 32)")
    options.add_precision_argument(parser)
    parser.add_argument("--max-batch", type=_max_batch, default="auto", metavar="N",
                        help="most same-size requests stylized as one batch; every batch of a size runs padded "
                             "to N images, so answers do not depend on the crowd (default: auto, 1 on CPU, 4 or "
                             "one per device on accelerators)")
    parser.add_argument("--batch-wait-ms", type=float, default=5.0, metavar="MS",
                        help="how long a request waits for others to share its batch (default: 5)")
    parser.add_argument("--style-cache-mb", type=_positive, default=256, metavar="MB",
                        help="memory for uploaded styles and their statistics, least recently used dropped "
                             "first (default: 256)")
    parser.add_argument("--warm", type=warm_sizes, default=DEFAULT_WARM, metavar="HxW,...",
                        help="content sizes (after resizing) whose programs compile before /api/health says "
                             f"ready; none to skip (default: {DEFAULT_WARM})")
    parser.add_argument("--header-timeout", type=_positive, default=10.0, metavar="S",
                        help="seconds a connection may take to send a request's headers (default: 10)")
    parser.add_argument("--body-timeout", type=_positive, default=120.0, metavar="S",
                        help="seconds a request may take to send its whole body; 408 after (default: 120)")
    parser.add_argument("--graceful-timeout", type=_positive, default=30.0, metavar="S",
                        help="at SIGTERM/Ctrl-C, seconds the requests in flight get to finish (default: 30)")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket; port 0 picks a free one (read it back with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host.strip("[]"), port), family=family, backlog=128)


def exposure_warning(host: str) -> str:
    return (f"WARNING: listening on {host}: anyone who can reach this machine can use the server (there is no "
            "authentication). Leave --host at 127.0.0.1 to keep it to this machine.")


def run(args) -> int:
    # The serve extra was checked before this runs (adain_jax.cli.EXTRAS).
    from adain_jax.serve.app import create_app, is_loopback
    from adain_jax.serve.server import Server, Settings

    images = args.images
    if images is not None and not images.is_dir():
        print(f"error: --images {images}: not a directory", file=sys.stderr)
        return 2
    if images is None and options.default_images().is_dir():
        images = options.default_images()
    try:
        sock = bind(args.host, args.port)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror or e}", file=sys.stderr)
        return 2
    loopback = is_loopback(args.host)
    if not loopback:
        print(exposure_warning(args.host), file=sys.stderr)
    try:
        weights, description, is_random = options.load_model(args.weights)
    except (FileNotFoundError, ValueError) as e:
        sock.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    import jax

    max_batch = (default_max_batch(jax.default_backend(), jax.local_device_count()) if args.max_batch == "auto"
                 else args.max_batch)
    app = create_app(weights, description=description, is_random=is_random, max_size=args.max_size,
                     max_upload_mb=args.max_upload_mb, queue_size=args.queue, images_dir=images,
                     loopback_only=loopback, max_batch=max_batch, batch_wait=args.batch_wait_ms / 1000,
                     style_cache_mb=args.style_cache_mb, warm=args.warm, body_timeout=args.body_timeout,
                     precision=options.effective_precision(args))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    server = Server(app, sock, Settings(header_timeout=args.header_timeout, graceful_timeout=args.graceful_timeout))
    print(f"adain-jax serve: http://{shown}:{port}/ ({description}; Ctrl-C stops)", flush=True)
    threading.Thread(target=_announce_ready, args=(app.state.worker, args.warm, time.perf_counter()),
                     daemon=True).start()
    server.run(handle_signals=True)
    print("adain-jax serve: stopped", flush=True)
    return 0


def _announce_ready(worker, warm, start: float) -> None:
    worker.ready.wait()
    sizes = ", ".join(f"{h}x{w}" for h, w in warm) or "nothing"
    print(f"adain-jax serve: ready (warmed {sizes} in {time.perf_counter() - start:.1f} s; "
          f"batches of up to {worker.max_batch})", flush=True)
