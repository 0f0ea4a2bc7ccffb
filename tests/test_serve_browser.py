"""`adain-jax serve` in a real headless browser: upload two images, set alpha, stylize, and check that
the picture the page shows is, byte for byte, what the API answers for the same inputs.

The browser is the system's Chromium (Debian: ``apt-get install chromium``; or $ADAIN_JAX_CHROMIUM),
driven by Playwright's Python package with ``executable_path``: Playwright never downloads a browser
here. Without either, the test is skipped and says which is missing. The server is the real command
(`python -m adain_jax.cli serve --port 0`) on loopback, always stopped, with the model a user gets
without --weights (the packaged one: no weights/flax in its working directory), which the page names
with no RANDOM WEIGHTS banner; with ``--weights random`` the banner is shown. The page may load nothing
from any other origin (every other request is aborted and fails the test). The screenshot is saved in
the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from helpers import write_image
from test_serve import exchange, multipart, pixels, serve_env

from adain_jax import pretrained
from docs.figures import launch_server, stop_server

BROWSERS = ("chromium", "chromium-browser", "google-chrome-stable", "google-chrome")
STYLIZE_TIMEOUT_MS = 240_000  # the first request compiles, on a 2-core machine shared with other jobs


def find_chromium() -> str | None:
    configured = os.environ.get("ADAIN_JAX_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


@pytest.fixture
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip("no Chromium found: apt-get install chromium (Debian), or set ADAIN_JAX_CHROMIUM to a "
                    "Chromium/Chrome executable")
    pytest.importorskip("playwright.sync_api", reason="the Playwright Python package is not installed "
                                                      "(pip install playwright; it is used with the system "
                                                      "Chromium, no browser is downloaded)")
    return path


def start_server(tmp_path, images_dir, *weights):
    """``adain-jax serve`` from ``tmp_path`` (no weights/flax there), $ADAIN_JAX_WEIGHTS unset."""
    return launch_server(["--port", "0", *weights, "--images", str(images_dir), "--warm", "none"], tmp_path,
                         serve_env(), timeout=120)


def launch(playwright, chromium):
    args = ["--disable-background-networking", "--disable-component-update", "--no-first-run"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium's sandbox refuses to run as root (CI containers)
    return playwright.chromium.launch(executable_path=chromium, headless=True, args=args)


def test_the_page_stylizes_like_the_api_with_nothing_from_outside(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    if not pretrained.available():
        pytest.skip("the packaged model (adain_jax/pretrained/weights.npz) is not in this checkout")

    examples = tmp_path / "examples"
    content = write_image(examples / "content" / "house.png", 40, 48, seed=1)
    style = write_image(examples / "style" / "brush.png", 32, 32, seed=2)
    write_image(examples / "style" / "waves.png", 32, 32, seed=3)
    process, origin = start_server(tmp_path, examples)
    outside, posted = [], []
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright, chromium)
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 900})

                def only_this_server(route):
                    if route.request.url.startswith(origin + "/"):
                        if route.request.method == "POST":
                            posted.append(route.request.post_data_buffer or b"")
                        route.continue_()
                    else:
                        outside.append(route.request.url)
                        route.abort()

                context.route("**/*", only_this_server)
                page = context.new_page()
                page.goto(origin + "/")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                # The packaged model, named; nothing on the page says RANDOM.
                assert page.inner_text("#weights").startswith("the packaged model adain-jax-open")
                assert not page.is_visible("#random-banner") and "RANDOM" not in page.inner_text("body")
                assert page.locator("#style-examples img").count() == 2

                page.set_input_files("#content-file", str(content))
                page.set_input_files("#style-files", str(style))
                page.locator("#alpha").evaluate("(el) => { el.value = '0.5'; el.dispatchEvent(new Event('input')); }")
                page.fill("#content-size", "0")
                page.fill("#style-size", "0")
                assert page.inner_text("#alpha-value") == "0.50"
                page.click("#stylize")
                page.wait_for_selector("#result[data-done]", timeout=STYLIZE_TIMEOUT_MS)
                assert page.inner_text("#status").startswith("done"), page.inner_text("#status")
                size = page.eval_on_selector("#result", "(img) => [img.naturalWidth, img.naturalHeight]")
                # The pixels of the image the page shows, read back through a canvas at its natural size.
                shown = np.array(page.eval_on_selector("#result", """(img) => {
                    const canvas = document.createElement('canvas');
                    canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
                    const ctx = canvas.getContext('2d');
                    ctx.drawImage(img, 0, 0);
                    return Array.from(ctx.getImageData(0, 0, canvas.width, canvas.height).data);
                }"""), np.int16).reshape(size[1], size[0], 4)
                assert page.get_attribute("#download", "download") == "house_stylized_brush.png"
                page.screenshot(path=str(tmp_path / "serve_page.png"), full_page=True)

                # An error is shown on the page, in words, and the page keeps working.
                page.fill("#style-size", "100000")
                page.click("#stylize")
                page.wait_for_selector("#status.error", timeout=60_000)
                assert "style_size 100000 is over this server's limit" in page.inner_text("#status")
                # The second request named the style by the hash the first answer gave, not by its bytes.
                assert len(posted) == 2 and b'filename="brush.png"' in posted[0]
                assert b'name="style_hash"' in posted[1] and b'filename="brush.png"' not in posted[1]
            finally:
                browser.close()

        body, content_type = multipart([
            ("content", (content.name, content.read_bytes())), ("style", (style.name, style.read_bytes())),
            ("alpha", "0.5"), ("content_size", "0"), ("style_size", "0")])
        port = int(origin.rsplit(":", 1)[1])
        status, _, answer = exchange(port, "POST", "/api/stylize", body, {"Content-Type": content_type})
    finally:
        stop_server(process)
    assert status == 200
    assert size == [48, 40]
    assert (shown[..., 3] == 255).all()
    assert np.array_equal(shown[..., :3], pixels(answer))
    assert outside == []
    assert (tmp_path / "serve_page.png").stat().st_size > 10_000


def test_random_weights_asked_for_are_labelled_on_the_page(chromium, tmp_path):
    from playwright.sync_api import sync_playwright

    examples = tmp_path / "examples"
    write_image(examples / "content" / "house.png", 40, 48, seed=1)
    write_image(examples / "style" / "brush.png", 32, 32, seed=2)
    process, origin = start_server(tmp_path, examples, "--weights", "random")
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright, chromium)
            try:
                page = browser.new_page()
                page.goto(origin + "/")
                page.wait_for_selector("body[data-ready=true]", timeout=60_000)
                assert page.is_visible("#random-banner")
                assert "RANDOM WEIGHTS (started with --weights random)" in page.inner_text("#random-banner")
                assert page.inner_text("#weights").startswith("RANDOM WEIGHTS")
                assert "random" in (page.get_attribute("#weights", "class") or "").split()
            finally:
                browser.close()
    finally:
        stop_server(process)
