"""Websocket /ws/runs/{id}: hello, history, then live messages; control messages in.

One task sends (the only writer to the socket), draining the client's bounded queue;
the handler itself reads. Replies go through the same queue, so a client sees the
events of its change before the ack, and everything in the order it happened.

Every message a client sends is answered, a bad one with an `error`, and the connection
stays open; only a message over max_body_bytes closes it (an error, then code 1009).
A damaged run (store.py) sends what of its frames could be read, then an `error` saying
why it is damaged.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from covshift.config import describe
from covshift.errors import ConfigError
from covshift.wire import encode, message

from .commands import RunNotActive, TooManyCommands, WorkerTimeout
from .deps import Manager
from .fanout import ClientClosed, ClientQueue
from .lifecycle import RunState
from .manager import AnyRun, RunManager, UnknownRun
from .projection import View, history_message, view_error
from .schemas import ControlMessage
from .security import origin_allowed

log = logging.getLogger(__name__)

router = APIRouter()

POLICY_VIOLATION = 1008
MESSAGE_TOO_BIG = 1009
UNKNOWN_RUN = 4404  # application close code (4000-4999): no run with this id


@router.websocket("/ws/runs/{run_id}")
async def run_socket(websocket: WebSocket, run_id: str, manager: Manager) -> None:
    if not origin_allowed(websocket.headers, manager.settings.allowed_origins):
        # Closing before accepting refuses the handshake (HTTP 403).
        await websocket.close(code=POLICY_VIOLATION, reason="origin not allowed")
        return
    try:
        run = manager.get(run_id)
    except UnknownRun as exc:
        await websocket.accept()
        await websocket.send_text(encode(message("error", id=None, message=str(exc))))
        await websocket.close(code=UNKNOWN_RUN, reason="unknown run")
        return
    view, problem = _view_asked(websocket)
    await websocket.accept()
    if problem is not None:
        await websocket.send_text(encode(message("error", id=None, message=problem)))
        await websocket.close(code=POLICY_VIOLATION, reason="bad view")
        return
    client = ClientQueue(manager.settings.client_queue, view)
    try:
        hello, history = await run.attach(client)
    except Exception:  # a server bug must not drop the connection without a word
        log.exception("run %s: its history could not be read", run.id)
        hello, history = None, []
        _reply_error(client, None, f"run {run.id}: its history could not be read (see the log)")
    if run.state is RunState.DAMAGED:
        # After what of its frames could be read. The connection stays open, as a stored
        # run's does: closing would only make the page reconnect again and again.
        _reply_error(client, None, f"run {run.id} is damaged: {run.error}")
    sender = asyncio.create_task(_send(websocket, run, client, hello, history))
    try:
        refusal = await _receive(websocket, run, client, manager)
    finally:
        run.detach(client)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
    if refusal is not None:
        # The sender is gone, so this is the only writer now.
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await websocket.send_text(encode(message("error", id=None, message=refusal)))
            await websocket.close(code=MESSAGE_TOO_BIG, reason="message too big")


def _view_asked(websocket: WebSocket) -> tuple[View | None, str | None]:
    """The view the client names in its query (`tap` and `channel`, both or neither), or
    why it is not one."""
    query = websocket.query_params
    if "tap" not in query and "channel" not in query:
        return None, None
    raw = query.get("channel", "")
    channel: object = int(raw) if raw.isdigit() and len(raw) <= 6 else raw
    problem = view_error(query.get("tap"), channel)
    if problem is not None:
        return None, problem
    return View(str(query["tap"]), int(raw)), None


async def _send(
    websocket: WebSocket, run: AnyRun, client: ClientQueue, hello: str | None, history: list[str]
) -> None:
    # RuntimeError: sending on a closed socket; OSError: the peer vanished mid-send.
    with contextlib.suppress(ClientClosed, WebSocketDisconnect, RuntimeError, OSError):
        if hello is not None:
            await websocket.send_text(hello)
        if client.view is not None:
            # The whole history in one compressed message, in its place before live ones.
            await websocket.send_bytes(await _history_job(run, history, client.view)())
        else:
            for text in history:
                await websocket.send_text(text)
        while True:
            item = await client.get()
            if isinstance(item, str):
                await websocket.send_text(item)
            elif isinstance(item, bytes):
                await websocket.send_bytes(item)
            else:
                await websocket.send_bytes(await item())
    # Closed by the server (shutdown) or the peer: end the read side too.
    with contextlib.suppress(Exception):
        await websocket.close()


async def _receive(
    websocket: WebSocket, run: AnyRun, client: ClientQueue, manager: RunManager
) -> str | None:
    """Answer the client's messages until it leaves (None) or sends one too large to
    take (the error to send before closing)."""
    limit = manager.settings.max_body_bytes
    while True:
        received = await websocket.receive()
        if received["type"] == "websocket.disconnect":
            return None
        text = received.get("text")
        size = len(text.encode()) if text is not None else len(received.get("bytes") or b"")
        if size > limit:
            return f"message of {size} bytes is over the limit of {limit} bytes; closing"
        if text is None:
            _reply_error(client, None, "binary messages are not supported; send JSON text")
            continue
        try:
            await _handle(text, run, client, manager)
        except Exception:  # a server bug must cost one message, not the connection
            log.exception("run %s: a websocket message could not be handled", run.id)
            _reply_error(client, None, "the server failed on this message (see its log)")


async def _handle(text: str, run: AnyRun, client: ClientQueue, manager: RunManager) -> None:
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        _reply_error(client, None, f"malformed JSON: {exc}")
        return
    if not isinstance(data, dict):
        _reply_error(client, None, 'a message must be a JSON object with a "type"')
        return
    client_id = data.get("id")
    if isinstance(client_id, float) and client_id.is_integer():
        client_id = int(client_id)  # JSON Schema's "integer", as ControlMessage reads it
    if not isinstance(client_id, (str, int)) or isinstance(client_id, bool):
        client_id = None  # echo only what the message's `id` field may be
    if data.get("type") == "view":
        await _change_view(data, run, client, client_id)
        return
    if data.get("type") != "control":
        _reply_error(client, client_id, f"type: {_unknown_type(data.get('type'))}")
        return
    try:
        control = ControlMessage.model_validate(data)
        info = await manager.change(run, control.changes())
    except ValidationError as exc:
        _reply_error(client, client_id, describe(exc))
        return
    except (ConfigError, RunNotActive, TooManyCommands, WorkerTimeout) as exc:
        _reply_error(client, client_id, str(exc))
        return
    client.put(encode(message("ack", id=control.id, run=info.model_dump(mode="json"))), False)


async def _change_view(
    data: dict[str, Any], run: AnyRun, client: ClientQueue, client_id: str | int | None
) -> None:
    """Project this client's frames to a new view and send its history again for it."""
    problem = view_error(data.get("tap"), data.get("channel"))
    if problem is not None:
        _reply_error(client, client_id, problem)
        return
    view = View(data["tap"], data["channel"])
    # A live run's snapshot does not suspend: no frame can fall between the two views.
    client.view = view
    _, history = await run.snapshot()
    client.put(_history_job(run, history, view), False)


def _history_job(run: AnyRun, history: list[str], view: View) -> Callable[[], Awaitable[bytes]]:
    """Builds the compressed history when the sender gets to it, off the event loop."""
    projected = dict(run.projected(view))  # a copy: the loop adds to the original meanwhile

    async def build() -> bytes:
        return await asyncio.to_thread(history_message, history, view, projected)

    return build


def _unknown_type(value: object) -> str:
    if isinstance(value, str):
        shown = repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
        return f"unknown message type {shown}; expected 'control' or 'view'"
    if value is None:
        return "missing; expected 'control' or 'view'"
    # Not repr: a deeply nested value would recurse, a long one would be echoed whole.
    kind = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    return f"must be the string 'control' or 'view', not {kind.get(type(value), 'an object')}"


def _reply_error(client: ClientQueue, client_id: str | int | None, text: str) -> None:
    client.put(encode(message("error", id=client_id, message=text)), False)
