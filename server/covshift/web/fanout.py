"""Per-client bounded send queues: a slow client loses its oldest frames, nobody waits for it.

Policy: `put` never blocks. When the queue is full, the oldest *frame* in it is dropped
(a newer frame supersedes it: every frame carries a full picture of the run); events,
acks and errors are kept, because each one says something a later message does not
repeat. Only a queue that is full of non-frames drops its oldest message. `dropped`
counts the losses.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .projection import View

# What a client is sent: JSON text, a binary message, or a binary message built when its
# turn comes (a history, compressed off the event loop, in order with the rest).
Outgoing = str | bytes | Callable[[], Awaitable[bytes]]


class ClientClosed(Exception):
    """The queue was closed: the run's server is shutting down."""


class ClientQueue:
    """Messages waiting to be sent to one websocket client, and what the client views
    (None: whole frames)."""

    def __init__(self, maxsize: int, view: View | None = None) -> None:
        if maxsize < 1:
            raise ValueError("a client queue needs room for at least one message")
        self.maxsize = maxsize
        self.dropped = 0
        self.view = view
        self._items: deque[tuple[Outgoing, bool]] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, text: Outgoing, is_frame: bool) -> None:
        """Queue a message; call from the event loop."""
        if self._closed:
            return
        if len(self._items) >= self.maxsize:
            self._drop_oldest()
        self._items.append((text, is_frame))
        self._ready.set()

    def _drop_oldest(self) -> None:
        self.dropped += 1
        for index, (_, is_frame) in enumerate(self._items):
            if is_frame:
                del self._items[index]
                return
        self._items.popleft()

    async def get(self) -> Outgoing:
        """The oldest message; waits for one. Raises ClientClosed once closed."""
        while not self._items:
            if self._closed:
                raise ClientClosed
            self._ready.clear()
            await self._ready.wait()
        return self._items.popleft()[0]

    def close(self) -> None:
        self._closed = True
        self._items.clear()
        self._ready.set()
