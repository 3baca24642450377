"""`jaxstyle serve`'s HTTP API through Starlette's test client: uploads, jobs, progress events,
cancel, previews, webcam frames, every bad input, Host/Origin/token refusals, result-id traversal,
and the reproduced CLI command. One app for the module; tiny images, few iterations."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("starlette", reason="the web extra is not installed: pip install -e '.[web]'")

from serve_files import (
    ORIGIN,
    PORT,
    SIZE,
    data_url,
    half_mask,
    jpeg_bytes,
    photo_rgb,
    png_bytes,
    style_rgb,
    wait_for_job,
)
from starlette.testclient import TestClient

from jaxstyle.config_sources import build_config
from jaxstyle.errors import ImageError, MaskError, UsageError, one_line
from jaxstyle.io.decode import decode_image_bytes, load_image, read_image_metadata
from jaxstyle.masks import as_mask, check_masks
from jaxstyle.serve.app import create_app
from jaxstyle.serve.forms import progress_every
from jaxstyle.serve.security import ServeSettings

MAX_UPLOAD = 256 * 1024
MAX_PIXELS = 100_000
POST = {"origin": ORIGIN}


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-results")


@pytest.fixture(scope="module")
def client(results_dir):
    settings = ServeSettings(results_dir=results_dir, port=PORT, max_upload_bytes=MAX_UPLOAD, max_pixels=MAX_PIXELS)
    with TestClient(create_app(settings), base_url=ORIGIN) as client:
        yield client


@pytest.fixture(scope="module")
def images(client) -> dict[str, str]:
    """Upload ids: the photo and the style."""
    ids = {}
    for name, data in (("photo", png_bytes(photo_rgb())), ("style", png_bytes(style_rgb()))):
        response = client.post(f"/api/images?name={name}.png", content=data, headers=POST)
        assert response.status_code == 200, response.text
        assert response.json()["name"] == f"{name}.png"
        ids[name] = response.json()["id"]
    return ids


def submit(client, **settings) -> dict:
    response = client.post("/api/jobs", json=settings, headers=POST)
    assert response.status_code == 202, response.text
    return response.json()


def events_of(client, job_id: str) -> list[dict]:
    with client.stream("GET", f"/api/jobs/{job_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    return [json.loads(line[len("data: ") :]) for line in text.splitlines() if line.startswith("data: ")]


# ----------------------------------------------------------------------------------- the page


def test_page_is_served_with_a_strict_policy(client):
    page = client.get("/")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "unsafe" not in policy
    assert page.headers["x-content-type-options"] == "nosniff" and page.headers["x-frame-options"] == "DENY"
    html = page.text
    assert "<script>" not in html and " style=" not in html  # no inline script or style to allow
    assert "http://" not in html and "https://" not in html  # nothing from outside
    for asset in ("/static/app.js", "/static/app.css", "/static/builtin_styles.jpg"):
        assert client.get(asset).status_code == 200
    assert client.get("/api/info").headers["cache-control"] == "no-store"


@pytest.mark.parametrize("host", ["evil.example:8765", "127.0.0.1:9999", "localhost.evil.example", ""])
def test_foreign_host_header_is_refused(client, host):
    response = client.get("/api/info", headers={"host": host})
    assert response.status_code == 421
    assert "Host header" in response.json()["error"]


def test_origin_is_checked(client, images):
    body = {"content": images["photo"], "style": images["style"], "method": "fast"}
    cross_site = client.post("/api/jobs", json=body, headers={"origin": "http://evil.example"})
    assert cross_site.status_code == 403 and "other sites" in cross_site.json()["error"]
    without = client.post("/api/jobs", json=body)
    assert without.status_code == 403 and "Origin" in without.json()["error"]
    stream = client.get("/api/jobs/x/events", headers={"origin": "http://evil.example"})
    assert stream.status_code == 403
    other_port = client.post("/api/bundled/chelsea", headers={"origin": "http://127.0.0.1:9999"})
    assert other_port.status_code == 403


def test_other_addresses_need_the_token(results_dir):
    settings = ServeSettings.for_host("0.0.0.0", PORT, results_dir)
    assert settings.token and settings.token in settings.url
    plain = TestClient(create_app(settings), base_url=ORIGIN)
    assert plain.get("/").status_code == 401
    assert plain.get("/?token=wrong").status_code == 401
    opened = plain.get(f"/?token={settings.token}")
    assert opened.status_code == 200
    assert "HttpOnly" in opened.headers["set-cookie"] and "SameSite=Strict" in opened.headers["set-cookie"]
    assert plain.get("/static/app.js").status_code == 200  # the cookie the page got
    assert ServeSettings.for_host("127.0.0.1", PORT, results_dir).token is None


# ----------------------------------------------------------------------------------- uploads


def _cli_message(data: bytes, name: str) -> str:
    """What the CLI says about these bytes (decode_image_bytes, as `load_image` decodes a file)."""
    with pytest.raises(ImageError) as error:
        decode_image_bytes(data, name=name, max_pixels=MAX_PIXELS)
    return one_line(error.value)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"GIF89a not really", id="not-an-image"),
        pytest.param(b"", id="empty"),
        pytest.param(png_bytes(photo_rgb(8, 8)), id="too-small"),
        pytest.param(png_bytes(np.zeros((300, 400, 3), np.uint8)), id="too-many-pixels"),
        pytest.param(png_bytes(photo_rgb(48, 64))[:200], id="truncated"),
    ],
)
def test_bad_uploads_get_the_cli_message(client, data):
    response = client.post("/api/images?name=holiday.png", content=data, headers=POST)
    assert response.status_code == 422
    assert response.json() == {"error": _cli_message(data, "holiday.png"), "code": ImageError.exit_code}


def test_uploads_over_the_limit_are_refused_unread(client):
    response = client.post("/api/images?name=big.png", content=b"\0" * (MAX_UPLOAD + 1), headers=POST)
    assert response.status_code == 413 and "larger than" in response.json()["error"]

    def chunks():  # no Content-Length: the body is cut off while it is read
        for _ in range(5):
            yield b"\0" * (MAX_UPLOAD // 4)

    streamed = client.post("/api/images?name=big.png", content=chunks(), headers=POST)
    assert streamed.status_code == 413


def test_uploaded_names_are_never_paths(client, results_dir):
    name = "../../../../tmp/jaxstyle-escape.png"
    response = client.post(f"/api/images?name={name}", content=png_bytes(photo_rgb()), headers=POST)
    assert response.status_code == 200
    assert not Path("/tmp/jaxstyle-escape.png").exists()
    assert not any("escape" in path.name for path in results_dir.rglob("*"))


# ----------------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("change", "status", "expected"),
    [
        ({"method": "magic"}, 400, lambda: build_config(settings={"method": "magic"})),
        ({"style_strength": 2}, 400, lambda: build_config(settings={"style_strength": 2.0})),
        ({"max_size": "big"}, 400, "max_size must be an integer, got 'big'"),
        ({"max_size": 4096}, 400, "max size must be at most 2048 px"),
        ({"method": "gatys", "builtin": 3, "style": None}, 400, "built-in styles belong to the fast method"),
        ({"builtin": 3}, 400, "either style images or built-in styles"),
        ({"style": None}, 400, "choose a style first"),
        ({"content": None}, 400, "choose a photo first"),
        ({"content": "0123456789abcdef"}, 404, "no longer on the server"),
        ({"colour": "none"}, 400, "unknown setting(s) colour"),
        ({"iterations": True}, 400, "must be a number"),
    ],
)
def test_bad_settings_get_one_line(client, images, change, status, expected):
    body = {"content": images["photo"], "style": images["style"], "method": "fast", "max_size": SIZE, **change}
    response = client.post("/api/jobs", json=body, headers=POST)
    assert response.status_code == status
    if callable(expected):  # the very message the CLI prints for the same setting
        with pytest.raises(UsageError) as error:
            expected()
        expected = one_line(error.value)
    assert expected in response.json()["error"]


def test_a_body_that_is_not_json(client):
    response = client.post("/api/jobs", content=b"{nope", headers={**POST, "content-type": "application/json"})
    assert response.status_code == 400 and response.json()["error"] == "the request must be JSON"


# ----------------------------------------------------------------------------------- jobs


def test_fast_job_result_download_and_preview(client, images, results_dir):
    job = submit(client, content=images["photo"], style=images["style"], method="fast", max_size=SIZE)
    assert wait_for_job(client, job["id"])["state"] == "done"
    record = client.get("/api/results").json()[0]
    png = client.get(f"/api/results/{record['id']}.png")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert "attachment" in png.headers["content-disposition"]
    saved = results_dir / f"{record['id']}.png"
    assert saved.read_bytes() == png.content
    metadata = read_image_metadata(saved)
    assert json.loads(metadata["jaxstyle.config"])["method"] == "fast"
    assert json.loads((results_dir / f"{record['id']}.json").read_text())["command"] == record["command"]
    for part in ("before", "thumb"):
        assert client.get(f"/api/results/{record['id']}/{part}.jpg").headers["content-type"] == "image/jpeg"
    words = shlex.split(record["command"])
    assert words[:2] == ["jaxstyle", "stylize"] and "--max-size" in words  # run by the CLI with masks, below

    # The preview of the same settings is the same picture (JPEG-compressed).
    preview = client.post(
        "/api/preview",
        json={"content": images["photo"], "style": images["style"], "method": "fast", "max_size": SIZE},
        headers=POST,
    )
    assert preview.headers["content-type"] == "image/jpeg"
    shown = decode_image_bytes(preview.content).rgb
    assert shown.shape == load_image(saved).rgb.shape
    assert np.abs(shown - load_image(saved).rgb).mean() < 0.03


@pytest.mark.parametrize(
    "path",
    [
        "/api/results/..%2F..%2F..%2Fetc%2Fpasswd.png",
        "/api/results/../../../../etc/passwd.png",
        "/api/results/%2e%2e%2fserve-results.png",
        "/api/results/20991231-235959-abcdef.png",  # well-formed, unknown
        "/api/results/20991231-235959-abcdef/../../before.jpg",
        "/static/../../pyproject.toml",
        "/static/%2e%2e/app.py",
    ],
)
def test_result_ids_do_not_traverse(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert b"root:" not in response.content and b"[project]" not in response.content


def test_optimisation_streams_progress_and_a_queued_job_is_cancelled(client, images, results_dir):
    # Cancelling a running optimisation is the browser test's (tests/test_serve_browser.py): one
    # optimisation per file, the fewest iterations that report a picture.
    before = set(results_dir.glob("*.png"))
    job = submit(client, content=images["photo"], style=images["style"], method="gatys", max_size=SIZE, iterations=10)
    queued = submit(client, content=images["photo"], style=images["style"], method="fast", max_size=SIZE)
    assert client.post(f"/api/jobs/{queued['id']}/cancel", headers=POST).json()["state"] == "cancelled"
    assert events_of(client, queued["id"])[-1]["type"] == "cancelled"
    assert client.post("/api/jobs/nope/cancel", headers=POST).status_code == 404
    assert wait_for_job(client, job["id"])["state"] == "done"
    events = events_of(client, job["id"])
    assert [event["type"] for event in events][:2] == ["queued", "started"] and events[-1]["type"] == "done"
    (progress,) = [event for event in events if event["type"] == "progress"]
    assert progress_every(SIZE) == 10 and progress_every(384) == 2 and progress_every(1024) == 1
    assert progress["done"] == 10 and progress["image"].startswith("data:image/jpeg;base64,")
    assert set(progress["loss"]) >= {"total", "content", "style"}
    record = events[-1]["result"]
    assert record["scores"]["total"] > 0 and "--iterations 10" in record["command"]
    assert "jaxstyle.losses" in read_image_metadata(results_dir / f"{record['id']}.png")
    assert set(results_dir.glob("*.png")) - before == {results_dir / f"{record['id']}.png"}  # none from the queued


# ----------------------------------------------------------------------------------- masks


def test_a_painted_mask_styles_its_half_and_leaves_the_photo(client, images, results_dir, tmp_path):
    mask = png_bytes(half_mask())
    settings = {"content": images["photo"], "style": images["style"], "method": "fast", "max_size": SIZE}
    job = submit(client, **settings, masks=[data_url(mask)])
    assert wait_for_job(client, job["id"])["state"] == "done"
    record = client.get("/api/results").json()[0]
    saved = results_dir / f"{record['id']}.png"
    masked = load_image(saved).rgb
    whole = decode_image_bytes(client.post("/api/preview", json=settings, headers=POST).content).rgb
    photo = photo_rgb() / 255.0
    styled, kept = np.s_[:, :24], np.s_[:, 40:]  # away from the edge at x = 32
    # The painted half is nearer the whole run than the photo (0.17 against 0.35 when written; each
    # region has its own statistics, so not equal); the other half stays nearer the photo than the
    # whole run does (0.17 against 0.38).
    distance = lambda a, b: np.abs(a - b).mean()
    assert distance(masked[styled], whole[styled]) < 0.7 * distance(masked[styled], photo[styled])
    assert distance(masked[kept], photo[kept]) < 0.6 * distance(whole[kept], photo[kept])
    # The preview shows the mask as the job will.
    shown = client.post("/api/preview", json={**settings, "masks": [data_url(mask)]}, headers=POST)
    assert np.abs(decode_image_bytes(shown.content).rgb - masked).mean() < 0.03

    # The mask is kept beside the inputs, named in the metadata as the CLI names it, and the
    # shown command, run by the CLI, makes the same picture.
    words = shlex.split(record["command"])
    kept_mask = Path(words[words.index("--style-mask") + 1])
    assert kept_mask.parent == results_dir / "inputs" and kept_mask.read_bytes() == mask
    assert record["masks"] == [str(kept_mask)]
    assert json.loads(read_image_metadata(saved)["jaxstyle.inputs"])["masks"] == [str(kept_mask)]
    from jaxstyle.cli.app import main

    output = words.index("-o") + 1
    words[output] = str(tmp_path / words[output])
    assert main(words[1:]) == 0
    np.testing.assert_array_equal(load_image(words[output]).rgb, masked)


def _mask_error(call) -> str:
    """The one line of the `MaskError` that ``call`` raises."""
    with pytest.raises(MaskError) as raised:
        call()
    return one_line(raised.value)


def _unreadable(data: bytes) -> str:
    """The line `jaxstyle.masks.load_mask` gives for a mask file the image loader refuses."""
    with pytest.raises(ImageError) as raised:
        decode_image_bytes(data, name="style mask 1", min_side=1, max_pixels=MAX_PIXELS)
    return f"style mask 1: {one_line(raised.value)}"


BIG = np.full((400, 400), 255, np.uint8)  # 160,000 pixels, over this app's 100,000


@pytest.mark.parametrize(
    ("masks", "expected"),
    [
        ([np.zeros((48, 64), np.uint8)], lambda: _mask_error(lambda: as_mask(np.zeros((2, 2)), what="style mask 1"))),
        ([half_mask(), half_mask()], lambda: _mask_error(lambda: check_masks([0, 0], 1, (1, 1)))),
        (
            [half_mask(64, 64)],
            lambda: _mask_error(lambda: check_masks([np.ones((64, 64))], 1, (48, 64), names=["style mask 1"])),
        ),
        ([b"not an image"], lambda: _unreadable(b"not an image")),
        ([BIG], lambda: _unreadable(png_bytes(BIG))),
    ],
    ids=["all-black", "count", "aspect", "not-an-image", "too-many-pixels"],
)
@pytest.mark.parametrize("route", ["/api/jobs", "/api/preview"])
def test_bad_masks_get_the_cli_message(client, images, masks, expected, route):
    sent = [data_url(png_bytes(m) if isinstance(m, np.ndarray) else m) for m in masks]
    body = {"content": images["photo"], "style": images["style"], "method": "fast", "max_size": SIZE, "masks": sent}
    response = client.post(route, json=body, headers=POST)
    assert response.status_code == 422 and response.json()["code"] == MaskError.exit_code
    assert response.json()["error"] == expected()


# ----------------------------------------------------------------------------------- webcam


def test_webcam_frames_are_blended_with_the_frame_before(client, images):
    first, second = photo_rgb(), photo_rgb(seed=1)  # the same scene, other noise
    settings = {"style": images["style"], "max_size": SIZE}  # the preview's runner, already compiled

    def frames(*rgbs) -> list[np.ndarray]:
        session = client.post("/api/live", json=settings, headers=POST).json()["id"]
        out = []
        for rgb in rgbs:
            response = client.post(f"/api/live/{session}/frame", content=jpeg_bytes(rgb, 98), headers=POST)
            assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
            out.append(decode_image_bytes(response.content).rgb)
        client.post(f"/api/live/{session}/stop", headers=POST)
        return out

    streamed = frames(first, second)
    (alone,) = frames(second)
    assert streamed[1].shape == (48, 64, 3)
    # The blend pulls the second frame towards the first one's result (fast's temporal weight 0.6).
    assert np.abs(streamed[1] - streamed[0]).mean() < 0.7 * np.abs(alone - streamed[0]).mean()

    session = client.post("/api/live", json=settings, headers=POST).json()["id"]
    bad = client.post(f"/api/live/{session}/frame", content=b"not a frame", headers=POST)
    assert bad.status_code == 422 and "webcam frame" in bad.json()["error"]
    gone = client.post("/api/live/0000/frame", content=jpeg_bytes(first), headers=POST)
    assert gone.status_code == 404


# ----------------------------------------------------------------------------------- the command


def _run_cli(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)


def test_help_loads_no_web_stack_or_jax():
    code = (
        "import sys\nfrom jaxstyle.cli.app import main\nmain(['serve', '--help'])\n"
        "print(sorted(m for m in ('starlette', 'uvicorn', 'jax', 'numpy') if m in sys.modules))"
    )
    result = _run_cli(code)
    assert result.returncode == 0 and result.stdout.strip().endswith("[]"), result.stdout + result.stderr


def test_without_the_web_extra_one_line_says_how_to_install():
    code = "import sys\nsys.modules['uvicorn'] = None\nfrom jaxstyle.cli.app import main\nsys.exit(main(['serve']))"
    result = _run_cli(code)
    assert result.returncode == 3
    assert result.stderr.strip() == "error: jaxstyle serve needs the web extra: pip install 'jaxstyle[web]'"
