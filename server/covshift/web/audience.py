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
from .projection import View, projections
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
        # Per watched view, the projections of the live frames still in the history, by
        # frame text: a tab joining with a view someone watches costs only the compression.
        self._projected: dict[View, dict[str, str]] = {}

    def deliver(self, text: str, is_frame: bool) -> None:
        """One message to the history (while live) and to every client."""
        if self.history is not None:
            self.history.append(text, is_frame)
        self.broadcast(text, is_frame)

    def broadcast(self, text: str, is_frame: bool) -> None:
        """To every client: a frame projected to each client's view (parsed once, projected
        once per distinct view), everything else as it is."""
        views = {c.view for c in self.clients if c.view is not None} if is_frame else set()
        projected = projections(text, views) if views else {}
        if self.history is not None and projected:
            self._remember(text, projected)
        for client in self.clients:
            view = client.view
            client.put(projected[view] if view is not None and is_frame else text, is_frame)

    def _remember(self, text: str, projected: dict[View, str]) -> None:
        for view in list(self._projected):
            if view not in projected:
                del self._projected[view]  # nobody watches it now
        for view, shown in projected.items():
            kept = self._projected.setdefault(view, {})
            kept[text] = shown
            if self.history is not None and len(kept) > 2 * self.history_frames:
                held = set(self.history.snapshot())
                self._projected[view] = {t: p for t, p in kept.items() if t in held}

    def projected(self, view: View) -> dict[str, str]:
        """The live frames already projected to this view, by their text."""
        return self._projected.get(view, {})

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
