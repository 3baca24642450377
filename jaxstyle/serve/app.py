"""`create_app(settings) -> Starlette`: the routes of the page and its API.

Handlers check what they are sent, call the library (through `jobs`, `live` and `uploads`) and
map its errors to JSON answers with the CLI's one-line messages: a `jaxstyle.errors` class gives
its own status (`STATUS`), a body too large 413. Nothing blocks the event loop: decoding runs in
Starlette's thread pool, jobs on the queue's worker, previews and webcam frames on the lane.

    GET  /                         the page (static/index.html); /static/* its script, styles, images
    GET  /api/info                 limits, defaults, bundled images, the results folder
    POST /api/images?name=N        raw image bytes -> {id, width, height, name}
    POST /api/bundled/{name}       a bundled image as an upload
    GET  /api/images/{id}.jpg      an upload, small (the page's thumbnails)
    POST /api/preview              settings JSON -> the fast method's picture (JPEG)
    POST /api/jobs                 settings JSON -> a queued job {id, ...}
                                   (settings: style = an id or a list, builtin = N or a list, masks =
                                   one PNG data URL per style)
    GET  /api/jobs                 every job's state
    GET  /api/jobs/{id}/events     server-sent events of one job, until it ends
    POST /api/jobs/{id}/cancel     cancel a queued or running job
    GET  /api/results              the results made since the server started, newest first
    GET  /api/results/{id}.png     a result with the CLI's metadata (a download)
    GET  /api/results/{id}/before.jpg, /thumb.jpg   the photo at the result's size; a thumbnail
    POST /api/live                 settings JSON -> a webcam session {id}
    POST /api/live/{id}/frame      a JPEG frame -> its stylized frame (JPEG)
    POST /api/live/{id}/stop       end a webcam session
"""

from __future__ import annotations

import json
import re
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jaxstyle.config import StyleConfig
from jaxstyle.errors import (
    ImageError,
    InputNotFoundError,
    JaxstyleError,
    MaskError,
    OutputError,
    UsageError,
    one_line,
)
from jaxstyle.serve import forms
from jaxstyle.serve.jobs import JobQueue
from jaxstyle.serve.live import Lane
from jaxstyle.serve.results import ResultStore, jpeg
from jaxstyle.serve.security import BodyTooLarge, Guard, ServeSettings, read_body
from jaxstyle.serve.uploads import BUNDLED, BUNDLED_TITLES, Uploads

STATUS = {UsageError: 400, InputNotFoundError: 404, ImageError: 422, MaskError: 422, OutputError: 500}
RESULT_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6}")
STATIC = Path(str(resources.files("jaxstyle.serve").joinpath("static")))


def error_response(error: BaseException) -> JSONResponse:
    """A library error as the CLI's one line, in JSON, with a 4xx status (5xx: the server's own)."""
    if isinstance(error, BodyTooLarge):
        return JSONResponse({"error": one_line(error)}, status_code=413)
    status = next((code for kind, code in STATUS.items() if isinstance(error, kind)), 400)
    body = {"error": one_line(error)}
    if isinstance(error, JaxstyleError):
        body["code"] = error.exit_code
    return JSONResponse(body, status_code=status)


def not_found(what: str = "no such thing here") -> JSONResponse:
    return JSONResponse({"error": what}, status_code=404)


async def json_body(request: Request, limit: int = 64 * 1024) -> object:
    try:
        return json.loads(await read_body(request, limit))
    except (ValueError, UnicodeDecodeError):
        raise UsageError("the request must be JSON") from None


def create_app(settings: ServeSettings) -> Starlette:
    """The app for ``settings``; its worker threads start with it and stop when it shuts down."""
    state = {}

    @asynccontextmanager
    async def lifespan(app):
        store = ResultStore(settings.results_dir)
        state.update(store=store, uploads=Uploads(settings.max_pixels), jobs=JobQueue(store), lane=Lane())
        try:
            yield
        finally:
            await run_in_threadpool(state["jobs"].close)
            state["lane"].close()

    def guarded(handler):
        async def run(request: Request) -> Response:
            try:
                return await handler(request, **request.path_params)
            except (JaxstyleError, BodyTooLarge) as error:
                return error_response(error)

        return run

    async def index(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def info(request: Request) -> Response:
        default = StyleConfig()
        builtin = None  # the 26 built-in styles; with ``serve --model``, the model's by name
        if settings.model is not None:
            from jaxstyle.nets.magenta_weights import read_trained_info

            builtin = [style.name for style in read_trained_info(settings.model).styles]
        return JSONResponse(
            {
                "results": str(state["store"].folder),
                "max_upload_bytes": settings.max_upload_bytes,
                "max_size": forms.MAX_SIZE,
                "max_live_size": forms.MAX_LIVE_SIZE,
                "bundled": [
                    {"name": name, "kind": BUNDLED_TITLES[name][0], "title": BUNDLED_TITLES[name][1]}
                    for name in BUNDLED
                ],
                "builtin": builtin,
                "defaults": {
                    "max_size": default.max_size,
                    "style_strength": default.fast.style_strength,
                    "content_weight": default.loss.content_weight,
                    "iterations": default.optimize.iterations,
                    "preserve_color": default.preserve_color,
                },
            }
        )

    def described(upload) -> dict:
        height, width = upload.image.size
        return {"id": upload.id, "name": upload.name, "width": width, "height": height}

    async def upload_image(request: Request) -> Response:
        data = await read_body(request, settings.max_upload_bytes)
        name = request.query_params.get("name", "upload")
        upload = await run_in_threadpool(state["uploads"].add, data, name)
        return JSONResponse(described(upload))

    async def upload_bundled(request: Request, name: str) -> Response:
        upload = await run_in_threadpool(state["uploads"].add_bundled, name)
        return JSONResponse(described(upload))

    async def image_thumbnail(request: Request, upload_id: str) -> Response:
        upload = state["uploads"].get(upload_id)
        data = await run_in_threadpool(jpeg, upload.image.rgb, 85, 512)
        return Response(data, media_type="image/jpeg")

    async def preview(request: Request) -> Response:
        body = await json_body(request, settings.max_upload_bytes)  # painted masks ride along
        parsed = await run_in_threadpool(forms.parse, body, state["uploads"], live=True, model=settings.model)
        data = await state["lane"].run(state["lane"].preview, parsed)
        return Response(data, media_type="image/jpeg")

    async def submit(request: Request) -> Response:
        body = await json_body(request, settings.max_upload_bytes)
        parsed = await run_in_threadpool(forms.parse, body, state["uploads"], model=settings.model)  # masks decoded
        job = state["jobs"].submit(parsed)
        return JSONResponse(job.summary(), status_code=202)

    async def jobs(request: Request) -> Response:
        return JSONResponse(state["jobs"].listed())

    async def job_events(request: Request, job_id: str) -> Response:
        job = state["jobs"].get(job_id)
        if job is None:
            return not_found("no such job")

        async def stream():
            async for event in state["jobs"].events(job):
                yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    async def cancel(request: Request, job_id: str) -> Response:
        job = state["jobs"].get(job_id)
        if job is None:
            return not_found("no such job")
        state["jobs"].cancel(job)
        return JSONResponse(job.summary())

    async def results(request: Request) -> Response:
        return JSONResponse(state["store"].listed())

    def result_or_404(result_id: str):
        if not RESULT_ID.fullmatch(result_id):
            raise HTTPException(404)
        result = state["store"].get(result_id)
        if result is None:
            raise HTTPException(404)
        return result

    async def result_png(request: Request, result_id: str) -> Response:
        result = result_or_404(result_id)
        headers = {"content-disposition": f'attachment; filename="jaxstyle-{result.id}.png"'}
        return FileResponse(result.path, media_type="image/png", headers=headers)

    async def result_part(request: Request, result_id: str, part: str) -> Response:
        result = result_or_404(result_id)
        data = {"before": result.before, "thumb": result.thumbnail}.get(part)
        return not_found() if data is None else Response(data, media_type="image/jpeg")

    async def live_start(request: Request) -> Response:
        parsed = forms.parse(
            await json_body(request), state["uploads"], need_content=False, live=True, model=settings.model
        )
        return JSONResponse({"id": state["lane"].start(parsed).id})

    async def live_frame(request: Request, session_id: str) -> Response:
        session = state["lane"].session(session_id)
        data = await read_body(request, settings.max_upload_bytes)
        frame = await state["lane"].run(state["lane"].frame, session, data)
        return Response(frame, media_type="image/jpeg")

    async def live_stop(request: Request, session_id: str) -> Response:
        state["lane"].stop(session_id)
        return JSONResponse({"stopped": session_id})

    async def http_error(request: Request, error: HTTPException) -> Response:
        return JSONResponse({"error": error.detail}, status_code=error.status_code)

    routes = [
        Route("/", index),
        Route("/api/info", guarded(info)),
        Route("/api/images", guarded(upload_image), methods=["POST"]),
        Route("/api/bundled/{name}", guarded(upload_bundled), methods=["POST"]),
        Route("/api/images/{upload_id}.jpg", guarded(image_thumbnail)),
        Route("/api/preview", guarded(preview), methods=["POST"]),
        Route("/api/jobs", guarded(submit), methods=["POST"]),
        Route("/api/jobs", guarded(jobs)),
        Route("/api/jobs/{job_id}/events", guarded(job_events)),
        Route("/api/jobs/{job_id}/cancel", guarded(cancel), methods=["POST"]),
        Route("/api/results", guarded(results)),
        Route("/api/results/{result_id}.png", guarded(result_png)),
        Route("/api/results/{result_id}/{part}.jpg", guarded(result_part)),
        Route("/api/live", guarded(live_start), methods=["POST"]),
        Route("/api/live/{session_id}/frame", guarded(live_frame), methods=["POST"]),
        Route("/api/live/{session_id}/stop", guarded(live_stop), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.add_middleware(Guard, settings=settings)
    app.state.serve = state
    return app
