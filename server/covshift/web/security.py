"""Security defaults: header and body size limits, security headers, the websocket origin check."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Plotly needs inline styles; everything else comes from this server. connect-src 'self'
# covers the page's own websocket too (CSP Level 3 counts ws:/wss: to the same host as
# 'self'), and no other host: injected script could not send data elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; connect-src 'self'; "
    "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


# uvicorn closes a websocket (1009) on a message over its own size limit before the app
# sees it, so no error could be sent. Its limit is set above max_body_bytes: the app reads
# a message up to this many times over the limit and answers it with an error first; only
# a larger one is cut off unread (memory stays bounded either way).
WS_TRANSPORT_FACTOR = 4


def ws_transport_limit(max_body_bytes: int) -> int:
    """uvicorn's ws_max_size for a server whose messages are limited to max_body_bytes."""
    return WS_TRANSPORT_FACTOR * max_body_bytes


class BodyTooLarge(HTTPException):
    """413; an HTTPException so that FastAPI's body parsing passes it through unchanged."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body over the limit of {limit} bytes")


class BodyLimitMiddleware:
    """Answers 413 to a request whose body is over `limit` bytes: by its Content-Length at
    once, and by counting as it streams in (chunked bodies, or a lying header)."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await self._refuse(send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body over the limit of {self.limit} bytes"})
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})


class HeaderLimitMiddleware:
    """Answers 431 to a request or websocket handshake with over `max_headers` headers or
    over `max_bytes` of them. The connection (connections.py) stops reading a head past
    max_bytes while it arrives; this catches one that arrived whole in a single read."""

    def __init__(self, app: ASGIApp, max_bytes: int, max_headers: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_headers = max_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = scope["headers"]
        size = sum(len(name) + len(value) + 4 for name, value in headers)  # "name: value\r\n"
        if len(headers) > self.max_headers:
            problem = f"{len(headers)} request headers, over max_headers ({self.max_headers})"
        elif size > self.max_bytes:
            problem = f"{size} bytes of request headers, over max_header_bytes ({self.max_bytes})"
        else:
            await self.app(scope, receive, send)
            return
        # On a websocket scope this is a denial response: the handshake gets the 431.
        refusal = JSONResponse({"detail": problem}, status_code=431)
        await refusal(scope, receive, send)


class SecurityHeadersMiddleware:
    """Adds the Content-Security-Policy and nosniff headers to every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in names]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def origin_allowed(headers: Headers, allowed_origins: list[str]) -> bool:
    """May this websocket handshake proceed? Browsers always send Origin, so a page on
    another site cannot ride on the user's access to this server (cross-site websocket
    hijacking); tools that send no Origin are not browsers and are let through."""
    origin = headers.get("origin")
    if origin is None:
        return True
    if origin.rstrip("/") in {allowed.rstrip("/") for allowed in allowed_origins}:
        return True
    parts = urlsplit(origin)
    host = headers.get("host", "")
    return parts.scheme in ("http", "https") and bool(host) and parts.netloc.lower() == host.lower()
