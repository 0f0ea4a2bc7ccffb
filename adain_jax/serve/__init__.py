"""``adain-jax serve``: a web page and HTTP API for stylizing images, for a team sharing one machine.

    request.py   multipart fields -> a validated `request.Job` (or a `request.RequestError` with its status)
    cache.py     style uploads and their statistics, a byte-bounded LRU (styles named by their hash)
    batching.py  the bounded queue that hands out batches, grouping by size, padding to the batch
    worker.py    the one thread that decodes, checks limits and stylizes, batch by batch
    metrics.py   Prometheus metrics and the middleware that counts and times every answer
    app.py       the Starlette ASGI app: page, examples, health, metrics, ``POST /api/stylize``, limits,
                 security headers
    server.py    Hypercorn under the app: header and read timeouts, graceful stop
    static/      the page (HTML, CSS, JS; nothing loaded from outside)

Starlette + Hypercorn rather than Gradio: a handful of small pure-Python packages instead of hundreds
of megabytes, nothing fetched from a CDN or sent home, and a plain HTTP API whose answers the tests
compare to ``adain-jax stylize``. Nothing here imports JAX at module level except the worker.
docs/webapp.md has the API, the options, why Hypercorn, and the load table.
"""
