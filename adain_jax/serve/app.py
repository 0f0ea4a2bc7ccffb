"""The web app: the page, the example images and ``POST /api/stylize``, as one Starlette ASGI app.

    GET  /                          the page (static/index.html, its CSS and JS under /static/)
    GET  /api/info                  weights description (random weights are flagged), limits, defaults
    GET  /api/examples              {"content": [names], "style": [...], "mask": [...]} from --images
    GET  /api/examples/{kind}/{n}   one example image
    GET  /api/health                200 once the start-up programs are compiled (503 "warming up" before):
                                    backend, devices, weights, queue depth
    GET  /api/metrics               Prometheus text format (`metrics`)
    POST /api/stylize               multipart form -> image/png, or {"error": "..."} with a 4xx status;
                                    the X-Style-Hashes header names the styles for later ``style_hash`` fields

Safety lives here and in the worker: the upload size is capped before and while the body is read
(413), and so is the time to read it (408); the requests being read or run are counted, and one over
the limit is answered 503 at once (sockets are not counted: an idle one holds no place, and the HTTP
server closes it after its header timeout, `server`); with a loopback bind only loopback Host
headers are served (no DNS rebinding) and a POST from another origin is refused (a web page cannot
make a visitor's server work); every answer carries a Content-Security-Policy that lets the page
load nothing from outside. Every error is JSON.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import pathlib
import urllib.parse

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from adain_jax.io import images as image_io
from adain_jax.precision import Precision
from adain_jax.serve import request as request_lib
from adain_jax.serve.cache import StyleCache
from adain_jax.serve.metrics import Metrics, RequestMetrics
from adain_jax.serve.worker import Worker, png_bytes

log = logging.getLogger("adain_jax.serve")

STATIC = pathlib.Path(__file__).resolve().parent / "static"
EXAMPLE_KINDS = ("content", "style", "mask")
# The page and its assets come only from this server; results are shown from blob: URLs.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
       "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses, as a bind address or a Host header's name.

    An address, not a prefix: a name such as 127.0.0.1.example.com (which a DNS-rebinding page could
    point here) is not loopback."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(host_header: str) -> str:
    if host_header.startswith("["):  # [::1]:8000
        return host_header[1:].split("]", 1)[0]
    return host_header.rsplit(":", 1)[0] if host_header.count(":") == 1 else host_header


class _TooLarge(Exception):
    pass


class _TooSlow(Exception):
    pass


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _too_large(max_upload: int) -> JSONResponse:
    return _error(413, f"upload too large: this server takes at most {max_upload / 2**20:g} MiB per request "
                       "(adain-jax serve --max-upload-mb)")


class Guard:
    """ASGI middleware: Host and Origin checks, the body's size and time caps, security headers on every answer."""

    def __init__(self, app, *, max_upload: int, loopback_only: bool, body_timeout: float = 120.0):
        self.app, self.max_upload, self.loopback_only = app, max_upload, loopback_only
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = dict(message, headers=list(message.get("headers", [])) + SECURITY_HEADERS)
            await send(message)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        refusal = None
        origin = headers.get("origin")
        length = headers.get("content-length")
        if self.loopback_only and not is_loopback(_host_name(host)):
            refusal = _error(400, f"unexpected Host header {host!r}: this server answers only on loopback "
                                  "addresses (adain-jax serve --host to serve others)")
        elif scope["method"] not in ("GET", "HEAD") and origin is not None \
                and urllib.parse.urlsplit(origin).netloc != host:
            refusal = _error(403, f"cross-origin request from {origin} refused")
        elif length is not None and (not length.isdigit() or int(length) > self.max_upload):
            refusal = _too_large(self.max_upload)
        if refusal is not None:
            return await refusal(scope, receive, send_with_headers)

        seen, deadline, done = 0, None, False

        async def limited_receive():
            nonlocal seen, deadline, done
            if done:
                return await receive()
            loop = asyncio.get_running_loop()
            if deadline is None:  # the whole body, however it trickles in, within body_timeout
                deadline = loop.time() + self.body_timeout
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                raise _TooSlow() from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_upload:
                    raise _TooLarge()
                done = not message.get("more_body", False)
            return message

        await self.app(scope, limited_receive, send_with_headers)


def _examples(images_dir: pathlib.Path | None) -> dict[str, list[pathlib.Path]]:
    found: dict[str, list[pathlib.Path]] = {kind: [] for kind in EXAMPLE_KINDS}
    if images_dir is None:
        return found
    for kind in EXAMPLE_KINDS:
        with contextlib.suppress(image_io.ImageError):
            found[kind] = image_io.list_images(images_dir / kind)
    return found


def create_app(weights, *, description: str, is_random: bool, max_size: int = 1024, max_upload_mb: float = 20,
               max_styles: int = 8, queue_size: int = 32, images_dir=None, loopback_only: bool = True,
               max_batch: int = 1, batch_wait: float = 0.005, style_cache_mb: float = 64, warm=(),
               body_timeout: float = 120.0, precision: Precision = "float32") -> Starlette:
    """The ASGI app around one `Worker` (started and stopped with the app's lifespan).

    ``description``: how the page and the X-Weights header name the weights; ``is_random`` shows the
    RANDOM WEIGHTS banner. ``loopback_only``: serve only loopback Host headers (for a loopback bind).
    ``max_batch``/``batch_wait`` (seconds): the worker's batches; ``style_cache_mb``: the style cache's
    budget; ``warm``: (height, width) content sizes compiled before /api/health says ready;
    ``body_timeout``: seconds to receive a request's whole body (408 after); ``precision``: of the
    convolutions (`adain_jax.precision`).
    """
    metrics = Metrics()
    cache = StyleCache(int(style_cache_mb * 2**20), on_hit=metrics.cache_hits.inc, on_miss=metrics.cache_misses.inc)
    worker = Worker(weights, max_size=max_size, queue_size=queue_size, max_batch=max_batch, max_wait=batch_wait,
                    cache=cache, metrics=metrics, warm=warm, precision=precision)
    # Requests being read, waiting or running: beyond this a new one is answered 503 before its body
    # is read (each may hold up to max_upload while its form is parsed).
    max_requests = 2 * queue_size + 16
    in_flight = 0
    max_upload = int(max_upload_mb * 2**20)
    examples = _examples(pathlib.Path(images_dir) if images_dir is not None else None)
    weights_header = description.encode("ascii", "replace").decode("ascii")

    async def index(request: Request):
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8")

    async def info(request: Request):
        return JSONResponse({
            "weights": description, "random_weights": is_random, "max_size": max_size,
            "max_pixels": worker.max_pixels, "max_upload_bytes": max_upload, "max_styles": max_styles,
            "defaults": _defaults(),
        })

    async def list_examples(request: Request):
        return JSONResponse({kind: [p.name for p in paths] for kind, paths in examples.items()})

    async def example(request: Request):
        kind, name = request.path_params["kind"], request.path_params["name"]
        for path in examples.get(kind, []):
            if path.name == name:  # only names from the listing: no path ever comes from the URL
                return FileResponse(path, headers={"Cache-Control": "max-age=3600"})
        return _error(404, f"no example {kind} image named {name!r}")

    async def health(request: Request):
        import jax

        ready = worker.ready.is_set()
        answer = {"status": "ready" if ready else "warming up", "backend": jax.default_backend(),
                  "devices": [str(d) for d in jax.local_devices()], "weights": description,
                  "random_weights": is_random, "queue_depth": worker.queue_depth, "max_batch": worker.max_batch,
                  "warm_sizes": [f"{h}x{w}" for h, w in worker.warm_sizes]}
        if not ready:
            answer["error"] = "warming up: compiling the start-up programs; try again shortly"
        return JSONResponse(answer, status_code=200 if ready else 503,
                            headers={"Cache-Control": "no-store", **({} if ready else {"Retry-After": "5"})})

    async def scrape(request: Request):
        return Response(metrics.render(), media_type=metrics.content_type, headers={"Cache-Control": "no-store"})

    async def stylize(request: Request):
        nonlocal in_flight
        content_type = request.headers.get("content-type", "")
        if not content_type.lower().startswith("multipart/form-data"):
            return _error(415, f"send multipart/form-data (e.g. curl -F content=@photo.jpg -F style=@art.jpg), "
                               f"not {content_type or 'no Content-Type'}")
        if in_flight >= max_requests:
            return JSONResponse({"error": f"busy: {in_flight} requests are being served; try again shortly"},
                                status_code=503, headers={"Retry-After": "5"})
        in_flight += 1
        try:
            async with request.form(max_files=max_styles + 2, max_fields=4 * len(request_lib.SCALAR_FIELDS),
                                    max_part_size=64 * 1024) as form:
                items: list[tuple[str, str | request_lib.Upload]] = []
                for name, value in form.multi_items():
                    if isinstance(value, UploadFile):
                        items.append((name, request_lib.Upload(name, value.filename or "", await value.read())))
                    else:
                        items.append((name, value))
            job = request_lib.parse(cache.resolve(items), max_size=max_size, max_styles=max_styles)
            pixels = await asyncio.wrap_future(worker.submit(job))
            png = await run_in_threadpool(png_bytes, pixels)
        except _TooLarge:
            return _too_large(max_upload)
        except _TooSlow:
            return _error(408, f"the request's body took over {body_timeout:g} s to arrive")
        except request_lib.RequestError as e:
            headers = {"Retry-After": "5"} if e.status == 503 else None
            return JSONResponse({"error": e.message}, status_code=e.status, headers=headers)
        finally:
            in_flight -= 1
        hashes = [cache.remember(style) for style in job.styles]  # decoded fine: worth naming later
        return Response(png, media_type="image/png", headers={
            "Content-Disposition": f'inline; filename="{job.filename()}"',
            "Cache-Control": "no-store",
            "X-Weights": weights_header,
            "X-Style-Hashes": ",".join(hashes),
        })

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _error(exc.status_code, str(exc.detail))

    async def server_error(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error", exc_info=exc)
        return _error(500, f"internal error: {type(exc).__name__}")

    @contextlib.asynccontextmanager
    async def lifespan(app):
        worker.start()
        try:
            yield
        finally:
            await run_in_threadpool(worker.stop)

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/api/info", info),
            Route("/api/examples", list_examples),
            Route("/api/examples/{kind}/{name}", example),
            Route("/api/health", health),
            Route("/api/metrics", scrape),
            Route("/api/stylize", stylize, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ],
        middleware=[Middleware(RequestMetrics, metrics=metrics),
                    Middleware(Guard, max_upload=max_upload, loopback_only=loopback_only, body_timeout=body_timeout)],
        # Starlette calls a handler with an instance of the class it is registered for; its stub types
        # every handler as taking any Exception, so the HTTPException one does not fit the dict's type.
        exception_handlers={HTTPException: http_error, Exception: server_error},  # type: ignore[dict-item]
        lifespan=lifespan,
    )
    app.state.worker, app.state.metrics, app.state.cache = worker, metrics, cache
    return app


def _defaults() -> dict:
    defaults = request_lib.Options()
    return {"alpha": defaults.alpha, "content_size": defaults.content_size, "style_size": defaults.style_size,
            "preserve_color": defaults.preserve_color, "crop": defaults.crop}

