"""The README's picture of `jaxstyle serve`: the bundled cat, *The Starry Night* painted over the
background with the page's mask brush, and the fast result beside its command.

    python docs/screenshots/take.py        # writes docs/screenshots/fast_result.png

Needs the web and test extras and Debian's chromium (as tests/test_serve_browser.py does). The
server runs in this process on a free loopback port, with its results in a temporary folder.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from pathlib import Path

import uvicorn
from playwright.sync_api import sync_playwright

from jaxstyle.serve.app import create_app
from jaxstyle.serve.security import ServeSettings

HERE = Path(__file__).resolve().parent
CHROMIUM = "/usr/bin/chromium"
# The face stays the photo: strokes along rows, in shares of the photo's width and height, that
# skip an ellipse round it.
FACE = (0.5, 0.52, 0.34, 0.46)  # centre x, centre y, half width, half height
ROWS = [i / 10 for i in range(11)]


def strokes() -> list[list[tuple[float, float]]]:
    cx, cy, rx, ry = FACE
    out = []
    for y in ROWS:
        inside = 1 - ((y - cy) / ry) ** 2
        if inside <= 0:
            out.append([(0.0, y), (1.0, y)])
        else:
            half = rx * inside**0.5
            out += [[(0.0, y), (cx - half, y)], [(cx + half, y), (1.0, y)]]
    return out


def main() -> None:
    listening = socket.socket()
    listening.bind(("127.0.0.1", 0))
    port = listening.getsockname()[1]
    with tempfile.TemporaryDirectory() as results:
        settings = ServeSettings(results_dir=Path(results), port=port)
        server = uvicorn.Server(uvicorn.Config(create_app(settings), log_level="warning"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [listening]})
        thread.start()
        while not server.started:
            time.sleep(0.05)
        try:
            shoot(f"http://127.0.0.1:{port}", HERE / "fast_result.png")
        finally:
            server.should_exit = True
            thread.join(30)


def shoot(address: str, path: Path) -> None:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1100, "height": 1060})
        page.set_default_timeout(180_000)
        page.goto(address + "/")
        page.wait_for_function("() => document.getElementById('status').textContent === 'Ready'")
        page.click("#photo-sample")
        page.wait_for_function("() => document.getElementById('photo-hint').textContent.includes('chelsea')")
        page.locator("#size").fill("384")
        page.click("#paintings .choice")
        page.check("#mask-on")
        page.locator("#brush").fill("80")
        page.locator("#brush").dispatch_event("input")
        page.evaluate("() => window.scrollTo(0, 0)")  # the strokes are in the viewport's coordinates
        box = page.locator("#paint-canvas").bounding_box()
        for stroke in strokes():
            points = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in stroke]
            page.mouse.move(*points[0])
            page.mouse.down()
            for point in points[1:]:
                page.mouse.move(*point, steps=8)
            page.mouse.up()
        # The preview compiles the masked network; the job then finds it, as a second job would.
        page.wait_for_function("() => Number(document.body.dataset.previews) >= 1")
        page.wait_for_timeout(1500)
        for count in (1, 2):  # the second job's time is the one a user sees after the first
            page.click("#stylize")
            page.wait_for_function(f"() => document.querySelectorAll('#gallery button').length >= {count}")
        page.wait_for_function(
            "() => document.getElementById('after').complete && document.getElementById('after').naturalWidth > 0"
        )
        page.locator("#compare-slider").fill("35")
        page.locator("#compare-slider").dispatch_event("input")
        page.evaluate("() => window.scrollTo(0, 0)")
        page.screenshot(path=path)
        browser.close()
    small(path)


def small(path: Path) -> None:
    """The screenshot in 256 colours: a page is mostly flat colour, and the README's picture stays
    under 300 KB."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
            path, optimize=True
        )


if __name__ == "__main__":
    main()
