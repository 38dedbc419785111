"""A run's audience: the hello and history a new tab gets first, and the clients it streams to.

Shared by the runs this server trains (run.Run) and the runs another process writes
(follow.FollowedRun): whoever produces a run's messages hands each one to `deliver`, and a
tab joins through `attach`. While the run is live its messages are kept in a bounded
History; once it has ended, a stored run is replayed from its frames.jsonl through the same
downsampling, so what a new tab gets does not depend on when it came.
"""

from __future__ import annotations

import asyncio

from .fanout import ClientQueue
from .history import History
from .store import RunStore


class Audience:
    """The hello, the bounded history and the clients of one run (`id`)."""

    def __init__(self, run_id: str, store: RunStore, history_frames: int, live: bool) -> None:
        self.id = run_id
        self.hello: str | None = None
        self.history: History | None = History(history_frames) if live else None
        self.history_frames = history_frames
        self.clients: set[ClientQueue] = set()
        self._store = store

    def deliver(self, text: str, is_frame: bool) -> None:
        """One message to the history (while live) and to every client."""
        if self.history is not None:
            self.history.append(text, is_frame)
        self.broadcast(text, is_frame)

    def broadcast(self, text: str, is_frame: bool) -> None:
        for client in self.clients:
            client.put(text, is_frame)

    async def attach(self, client: ClientQueue) -> tuple[str | None, list[str]]:
        """Start sending live messages to client; returns (hello, history) to send first."""
        if self.history is not None:
            # No await between the snapshot and joining: nothing is missed or sent twice.
            self.clients.add(client)
            return self.hello, self.history.snapshot()
        replay = await self.snapshot()
        self.clients.add(client)
        return replay

    async def snapshot(self) -> tuple[str | None, list[str]]:
        """(hello, messages) as a new tab gets them: the live history, or frames.jsonl replayed
        through the same downsampling. Bounded by history_frames whatever the run's length."""
        if self.history is not None:
            return self.hello, self.history.snapshot()
        # Not the pumps' pool: many tabs opening old runs must not delay live frames.
        return await asyncio.to_thread(self._store.replay, self.id, self.history_frames)

    def detach(self, client: ClientQueue) -> None:
        self.clients.discard(client)
