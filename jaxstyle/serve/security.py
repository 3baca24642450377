"""Who may talk to the server, and what every answer carries: configured in this one place.

`Guard` is a plain ASGI middleware in front of every route:

* **Host** must be one of the names the server is bound to (`allowed_hosts`), with its port: a
  page on another site that rebinds its DNS name to 127.0.0.1 sends its own name and is refused.
* **Origin**, when a browser sends one, must be the server's own; a state-changing request
  (anything but GET/HEAD) must send one. A cross-site form or script cannot post to the server.
* **Token**: bound to another address than loopback, every request needs the generated token,
  from the ``?token=`` of the printed address (which sets a same-site, HTTP-only cookie) or the
  ``X-Jaxstyle-Token`` header.
* **Size**: a request body above ``max_upload_bytes`` is refused before it is read (its
  Content-Length) or while it is read (`read_body`).
* **Headers**: a Content-Security-Policy that allows nothing from elsewhere and no inline
  script, ``nosniff``, no referrer, no framing, and no caching of the API's answers.

Plain Python: importing this loads no Starlette.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import socket
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
TOKEN_COOKIE = "jaxstyle_token"
TOKEN_HEADER = "x-jaxstyle-token"
SAFE_METHODS = frozenset({"GET", "HEAD"})
MAX_UPLOAD_BYTES = 25 * 2**20
MAX_UPLOAD_PIXELS = 50_000_000  # a 50-megapixel photo; decoded it takes 600 MB as float32

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "media-src 'self' blob: mediastream:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(self), microphone=(), geolocation=()"),
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs: where it listens, where results go, and its limits."""

    results_dir: Path
    host: str = "127.0.0.1"
    port: int = 8765
    # Required on every request when set; `for_host` generates one for a non-loopback address.
    token: str | None = None
    max_upload_bytes: int = MAX_UPLOAD_BYTES
    max_pixels: int = MAX_UPLOAD_PIXELS
    extra_hosts: tuple[str, ...] = field(default=())
    # A trained network (``jaxstyle serve --model``): the page's built-in styles are its styles.
    model: str | None = None

    @classmethod
    def for_host(cls, host: str, port: int, results_dir: Path, **options) -> ServeSettings:
        """Settings for ``host``: a token is generated unless the address is loopback."""
        token = None if is_loopback(host) else secrets.token_urlsafe(24)
        return cls(results_dir=Path(results_dir), host=host, port=port, token=token, **options)

    @property
    def url(self) -> str:
        name = self.host if self.host not in ("0.0.0.0", "::") else socket.gethostname()
        name = f"[{name}]" if ":" in name else name
        query = f"/?token={self.token}" if self.token else "/"
        return f"http://{name}:{self.port}{query}"


def allowed_hosts(settings: ServeSettings) -> frozenset[str]:
    """The host names a request may name: the bound address, and for a loopback or wildcard
    address the machine's own names (loopback: 127.0.0.1, localhost, ::1)."""
    names = {settings.host.lower().strip("[]"), *(name.lower() for name in settings.extra_hosts)}
    if is_loopback(settings.host) or settings.host in ("0.0.0.0", "::"):
        names.update(LOOPBACK_NAMES)
    if settings.host in ("0.0.0.0", "::"):  # every address of this machine
        hostname = socket.gethostname()
        names.update({hostname.lower(), socket.getfqdn().lower()})
        try:
            names.update(info[4][0] for info in socket.getaddrinfo(hostname, None))
        except OSError:
            pass
    return frozenset(names)


def split_host(value: str) -> tuple[str, int | None] | None:
    """'127.0.0.1:8765' -> ('127.0.0.1', 8765); '[::1]:80' -> ('::1', 80); None if malformed."""
    try:
        parts = urlsplit(f"//{value}")
        return (parts.hostname or "").lower(), parts.port
    except ValueError:
        return None


def json_error(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


class Guard:
    """The ASGI middleware described in the module docstring."""

    def __init__(self, app, settings: ServeSettings) -> None:
        self.app = app
        self.settings = settings
        self.hosts = allowed_hosts(settings)
        self.origins = frozenset(
            f"http://{f'[{name}]' if ':' in name else name}:{settings.port}" for name in self.hosts
        )

    def refusal(self, scope) -> tuple[int, str] | None:
        """Why the request is refused (status and a one-line message), or None."""
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        parsed = split_host(headers.get("host", ""))
        port = parsed[1] if parsed is not None and parsed[1] is not None else 80
        if parsed is None or parsed[0] not in self.hosts or port != self.settings.port:
            return 421, "this server answers only to its own address (Host header refused)"
        origin = headers.get("origin")
        if origin is not None and origin not in self.origins:
            return 403, "requests from other sites are refused (Origin header)"
        if origin is None and scope["method"] not in SAFE_METHODS:
            return 403, "a state-changing request needs the page's Origin header"
        if self.settings.token is not None and not secrets.compare_digest(
            self._given_token(scope, headers).encode(), self.settings.token.encode()
        ):
            return 401, "this server needs the token printed when it started (open the printed address)"
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.settings.max_upload_bytes):
            return 413, f"the upload is larger than {self.settings.max_upload_bytes // 2**20} MB"
        return None

    @staticmethod
    def _given_token(scope, headers: dict[str, str]) -> str:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0]
        if TOKEN_HEADER in headers:
            return headers[TOKEN_HEADER]
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except CookieError:  # a malformed cookie is no token
            return ""
        return cookie[TOKEN_COOKIE].value if TOKEN_COOKIE in cookie else ""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":  # none is served; refuse rather than pass one on
                await send({"type": "websocket.close", "code": 1008})
                return
            await self.app(scope, receive, send)
            return
        refused = self.refusal(scope)
        if refused is not None:
            status, body = json_error(*refused)
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        *SECURITY_HEADERS,
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        set_cookie = self._token_cookie(scope)

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if scope["path"].startswith("/api/"):
                    headers.append((b"cache-control", b"no-store"))
                if set_cookie is not None:
                    headers.append((b"set-cookie", set_cookie))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _token_cookie(self, scope) -> bytes | None:
        """The page opened with ``?token=``: keep the token in a cookie for the page's requests."""
        if self.settings.token is None or scope["path"] != "/":
            return None
        return f"{TOKEN_COOKIE}={self.settings.token}; Path=/; HttpOnly; SameSite=Strict".encode()


class BodyTooLarge(Exception):
    """A request body above the limit, found while reading it (no Content-Length, or a false one)."""


async def read_body(request, limit: int) -> bytes:
    """The request's body, refused past ``limit`` bytes without reading the rest."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(f"the upload is larger than {limit // 2**20} MB")
        chunks.append(chunk)
    return b"".join(chunks)
