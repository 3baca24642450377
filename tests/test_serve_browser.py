"""`jaxstyle serve`'s page in a real headless Chromium (Debian's package, driven by Playwright;
no browser is downloaded): it loads with no console error and no request leaving 127.0.0.1,
takes a photo and a style, shows a fast result, paints a mask for it, streams an optimisation's
pictures and cancels it, and stylizes Chromium's fake webcam. One server and one browser for the module.

Screenshots of each state go to a temporary folder, or to docs/screenshots/ with
``JAXSTYLE_SCREENSHOTS=1``, in 256 colours there to keep them small (the README's picture, of the
bundled cat, is docs/screenshots/take.py's).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the test extra)")

from serve_files import SIZE, photo_rgb, png_bytes, style_rgb

from jaxstyle.serve.app import create_app
from jaxstyle.serve.security import ServeSettings

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
]
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(), reason="Debian's chromium is not installed (apt-get install chromium; .ci/run does)"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The app on a free loopback port, served by uvicorn on a thread; its address."""
    import uvicorn

    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    settings = ServeSettings(results_dir=tmp_path_factory.mktemp("browser-results"), port=port)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(30)


@pytest.fixture(scope="module")
def page(server):
    """One page of one browser; ``page.problems`` collects console errors and outside requests."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        context = browser.new_context(viewport={"width": 1100, "height": 760})
        context.grant_permissions(["camera"], origin=server)
        page = context.new_page()
        page.problems = []
        page.on("console", lambda message: message.type == "error" and page.problems.append(message.text))
        page.on("pageerror", lambda error: page.problems.append(str(error)))

        def outside(request) -> None:
            if not request.url.startswith((server + "/", "data:", "blob:")):
                page.problems.append(f"request to {request.url}")

        page.on("request", outside)
        page.set_default_timeout(90_000)
        yield page
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    if os.environ.get("JAXSTYLE_SCREENSHOTS"):
        folder = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    return tmp_path_factory.mktemp("screenshots")


def shoot(page, folder: Path, name: str) -> None:
    page.screenshot(path=folder / name, full_page=True)
    if os.environ.get("JAXSTYLE_SCREENSHOTS"):
        from PIL import Image

        with Image.open(folder / name) as image:
            image.convert("RGB").quantize(256, dither=Image.Dither.NONE).save(folder / name, optimize=True)


def counter(page, name: str) -> int:
    return int(page.evaluate(f"() => document.body.dataset.{name}"))


def test_page_loads_offline(page, server):
    page.goto(server + "/")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Ready'")
    assert page.locator("#builtins .choice").count() == 26
    assert page.locator("#paintings .choice").count() == 1
    assert page.problems == []


def test_photo_and_style_give_a_fast_result(page, shots):
    page.locator("#size").fill(str(SIZE))
    photo = {"name": "photo.png", "mimeType": "image/png", "buffer": png_bytes(photo_rgb())}
    page.set_input_files("#photo-file", files=[photo])
    page.wait_for_function("() => document.getElementById('photo-hint').textContent.includes('photo.png')")
    page.click("[data-tab=own]")
    style = {"name": "stripes.png", "mimeType": "image/png", "buffer": png_bytes(style_rgb())}
    page.set_input_files("#style-file", files=[style])
    page.wait_for_function("() => Number(document.body.dataset.previews) >= 1")  # the live preview
    page.click("#stylize")
    page.wait_for_selector("#gallery button")
    page.wait_for_function(
        "() => document.getElementById('after').complete && document.getElementById('after').naturalWidth > 0"
    )
    assert page.locator("#compare").is_visible()
    assert page.locator("#command").text_content().startswith("jaxstyle stylize ")
    assert page.locator("#download").get_attribute("href").endswith(".png")
    shoot(page, shots, "fast_64px.png")
    assert page.problems == []


def test_a_painted_stroke_goes_with_the_job(page, shots):
    page.check("#mask-on")
    page.locator("#paint-canvas").scroll_into_view_if_needed()  # the mouse moves in the viewport
    box = page.locator("#paint-canvas").bounding_box()
    middle = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + 0.1 * box["width"], middle)
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], middle, steps=4)
    page.mouse.up()
    assert "not painted" not in page.locator("#regions button").text_content()
    results = page.locator("#gallery button").count()
    page.click("#stylize")
    page.wait_for_function(f"() => document.querySelectorAll('#gallery button').length > {results}")
    assert "--style-mask" in page.locator("#command").text_content()
    shoot(page, shots, "mask_64px.png")
    page.uncheck("#mask-on")  # the steps below style the whole picture
    assert page.locator("#paint").is_hidden()
    assert page.problems == []


def test_optimisation_shows_progress_then_cancels(page, shots):
    results = page.locator("#gallery button").count()
    page.check("input[name=method][value=gatys]")
    page.locator("#iterations").fill("5000")
    before = counter(page, "progressImages")
    page.click("#stylize")
    page.wait_for_function(f"() => Number(document.body.dataset.progressImages) >= {before + 2}")
    assert page.locator("#progress-text").text_content().startswith("scale 1/1")
    shoot(page, shots, "optimisation_progress.png")
    page.click("#cancel")
    page.wait_for_function("() => document.getElementById('status').textContent === 'Cancelled'")
    assert page.locator("#gallery button").count() == results  # the cancelled job left no result
    assert page.evaluate("async () => (await (await fetch('/api/results')).json()).length") == results
    assert page.problems == []


def test_webcam_mode_receives_stylized_frames(page, shots):
    page.check("input[name=method][value=fast]")
    page.click("#live")
    page.wait_for_function("() => Number(document.body.dataset.liveFrames) >= 5")
    assert "frames per second" in page.locator("#fps").text_content()
    shoot(page, shots, "webcam_live.png")
    page.click("#live")
    assert page.locator("#live").get_attribute("aria-pressed") == "false"
    assert page.problems == []
