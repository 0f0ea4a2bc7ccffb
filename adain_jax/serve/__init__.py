"""``adain-jax serve``: a local web page and HTTP API for stylizing images, safe by default.

    request.py   multipart fields -> a validated `request.Job` (or a `request.RequestError` with its status)
    worker.py    the one thread that decodes, checks limits and stylizes, behind a bounded queue
    app.py       the Starlette ASGI app: page, examples, ``POST /api/stylize``, limits and security headers
    static/      the page (HTML, CSS, JS; nothing loaded from outside)

Starlette + uvicorn rather than Gradio: a handful of small pure-Python packages instead of hundreds
of megabytes, nothing fetched from a CDN or sent home, and a plain HTTP API whose answers the tests
compare to ``adain-jax stylize``. Nothing here imports JAX at module level except the worker.
"""
