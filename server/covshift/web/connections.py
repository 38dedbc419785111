"""HTTP/1.1 connections with bounds: header size, request and keep-alive timeouts, a cap.

uvicorn's h11 protocol with these additions, for `uvicorn.Config(http=...)`:
- a request must arrive whole (head and body) within `request_timeout` of the connection
  or of its first byte; a byte now and then does not restart the clock (slowloris);
- a head over `max_header_bytes` is answered 431 (h11 stops buffering there; the count of
  headers, and a head that arrived whole, are checked by security.HeaderLimitMiddleware);
- a connection past `max_connections` is answered 503 at once, not left waiting for a
  file descriptor;
- a websocket handshake that uvicorn's websocket protocol would leave hanging (its own
  refusals of a long line, many headers or a body are never sent) is answered 431 here, or
  closed when the request timeout finds it still unfinished.
Idle keep-alive connections are closed by uvicorn's own `timeout_keep_alive`. h11 and not
httptools: httptools' parser has no bound on a header's size.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState
from websockets.http11 import MAX_LINE_LENGTH, MAX_NUM_HEADERS

if sys.platform != "win32":  # no open-file limit to fit on Windows
    import resource

log = logging.getLogger(__name__)

# After an error answer the client may still be sending (a 2 MB header): reading and
# dropping its bytes this long lets it finish and read the answer, where closing at once
# would reset the connection under it. Memory stays flat: nothing is kept.
LINGER_SECONDS = 1.0
# Connections past the cap that may linger at once: beyond these a 503 is sent and the
# socket closed at once, so a flood cannot run the process out of file descriptors.
LINGERING_REFUSALS = 64
# Open files other than connections: the lingering refusals, listening sockets, logs,
# each run's worker pipes and store files, the interpreter's own.
FILES_KEPT_BACK = 256


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    request_timeout: float
    max_connections: int


class BoundedH11Protocol(H11Protocol):
    """One HTTP/1.1 connection; protocol_class() sets `limits` on a subclass."""

    limits: ConnectionLimits

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        # h11 refuses ("Receive buffer too long") a head still incomplete past this size.
        self.conn = h11.Connection(h11.SERVER, self.limits.max_header_bytes)
        self._deadline: asyncio.TimerHandle | None = None
        self._upgraded = False  # handed to the websocket protocol
        self._lingering = False  # answered with an error: dropping input until closed
        self._refused = False  # past the cap: answered 503 before any request

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        cap = self.limits.max_connections
        if len(self.connections) > cap:  # lingering refusals are still in the set
            log.warning("refused a connection: max_connections (%d) are open", cap)
            self._refused = True
            linger = len(self.connections) <= cap + LINGERING_REFUSALS
            text = f"too many connections (max_connections is {cap})"
            self._answer_and_close(503, text, linger=linger)
            return
        self._arm_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            if self._refused:  # its request, read: the 503 can go without a reset
                self.transport.close()
            return
        super().data_received(data)
        # A request still arriving (head or body) keeps its deadline, or gets one from its
        # first byte; once it has arrived, the response and keep-alive are uvicorn's.
        waiting = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
        if self._upgraded or self.transport.is_closing():
            return
        if waiting:
            self._arm_deadline()
        else:
            self._cancel_deadline()

    def handle_websocket_upgrade(self, event: h11.Request) -> None:
        request_line = len(event.method) + len(event.target) + len(" HTTP/1.1") + 1
        lines = [request_line, *(len(name) + len(value) + 2 for name, value in self.headers)]
        if len(self.headers) > MAX_NUM_HEADERS or max(lines) > MAX_LINE_LENGTH:
            self._answer_and_close(431, "websocket handshake over the websockets parser's limits")
            return
        # A deadline until the handshake is done (_request_timed_out), for a request that
        # came whole on a kept-alive connection too.
        self._upgraded = True
        self._arm_deadline()
        super().handle_websocket_upgrade(event)

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to any h11 error; a head over the limit deserves its own status.
        if len(self.conn.trailing_data[0]) > self.limits.max_header_bytes:
            limit = self.limits.max_header_bytes
            self._answer_and_close(431, f"request headers over max_header_bytes ({limit})")
        else:
            self._answer_and_close(400, msg)

    def shutdown(self) -> None:
        if self._lingering:
            self.transport.close()
        else:
            super().shutdown()

    def _arm_deadline(self) -> None:
        if self._deadline is None:
            timeout = self.limits.request_timeout
            self._deadline = self.loop.call_later(timeout, self._request_timed_out)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _request_timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._lingering:
            return
        if self._upgraded:
            if not _handshake_done(self.transport.get_protocol()):
                self.transport.close()
            return
        if self.conn.their_state is h11.IDLE and self.conn.trailing_data[0]:
            timeout = self.limits.request_timeout
            self._answer_and_close(408, f"request not whole within request_timeout ({timeout} s)")
        else:
            # Nothing asked, nothing to answer; or a body the app is reading, whose response
            # is the app's: closing tells it the client is gone.
            self.transport.close()

    def _answer_and_close(self, status: int, text: str, linger: bool = True) -> None:
        self._cancel_deadline()
        self._unset_keepalive_if_required()
        body = text.encode()
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        head = h11.Response(status_code=status, headers=headers, reason=HTTPStatus(status).phrase)
        try:
            for event in (head, h11.Data(data=body), h11.EndOfMessage()):
                if output := self.conn.send(event):
                    self.transport.write(output)
        except h11.LocalProtocolError:
            pass  # a response was already under way: closing is all that is left
        if not linger:
            self.transport.close()
            return
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


def _handshake_done(protocol: object) -> bool:
    """Has this websocket protocol (any of uvicorn's) finished its opening handshake?"""
    done = getattr(protocol, "handshake_complete", None)  # websockets-sansio, wsproto
    if done is None:
        event = getattr(protocol, "handshake_completed_event", None)  # legacy websockets
        done = event is None or event.is_set()
    return bool(done)


def protocol_class(limits: ConnectionLimits) -> type[BoundedH11Protocol]:
    """The class to pass as uvicorn.Config(http=...) for these limits."""

    class Bounded(BoundedH11Protocol):
        pass

    Bounded.limits = limits
    return Bounded


def fit_open_files(max_connections: int, soft: int, hard: int) -> tuple[int, int]:
    """(soft open-file limit to set, connection cap) such that the cap is reached before
    the limit: past it accept() fails and clients hang. Raises the soft limit when the
    hard one allows it, else lowers the cap. A negative limit is unlimited (RLIM_INFINITY
    on Linux; elsewhere it is a huge number)."""
    need = max_connections + FILES_KEPT_BACK
    if soft < 0 or soft >= need:
        return soft, max_connections
    if hard < 0 or hard >= need:
        return need, max_connections
    return soft, max(1, soft - FILES_KEPT_BACK)


def fit_connection_cap(max_connections: int) -> int:
    """The cap this process can keep, after raising its open-file limit if it must."""
    if sys.platform == "win32":
        return max_connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new_soft, cap = fit_open_files(max_connections, soft, hard)
    if new_soft != soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (new_soft, hard))
        except (ValueError, OSError):  # e.g. over the system's own per-process maximum
            cap = max(1, soft - FILES_KEPT_BACK)
    if cap < max_connections:
        log.warning(
            "max_connections lowered from %d to %d to fit the open-file limit (ulimit -n %d)",
            max_connections,
            cap,
            soft,
        )
    return cap
