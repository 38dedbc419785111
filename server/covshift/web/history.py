"""A run's bounded in-memory history: deterministic, ordered downsampling of its frames.

The rule (stride doubling). Frames are numbered 0, 1, 2, ... in arrival order. The
history keeps the frames whose number is a multiple of `stride` (1 at first), plus the
newest frame whatever its number. When the kept frames would exceed `capacity`, the
stride doubles and every second kept frame goes (those whose number is not a multiple
of the new stride). So:

- the first frame (number 0) and the newest frame are always kept;
- the kept frames are evenly spaced in time, so a new tab's heatmap has an even time
  axis over the whole run, at most `capacity` frames wide;
- the result depends only on the sequence of messages, never on timing, so replaying
  a stored run through the same rule gives exactly what the live history held.

Events are few and each one matters (a learning-rate change, a divergence), so they are
never thinned; only when there are more than `capacity` of them are the oldest dropped.
Every message keeps its arrival number, and `snapshot` returns them in arrival order.
"""

from __future__ import annotations

import heapq
from collections import deque

Entry = tuple[int, str]  # (arrival number, JSON text)


class History:
    """Frames and events of one run, at most `capacity` of each, in arrival order."""

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("a history needs room for the first and the newest frame")
        self.capacity = capacity
        self.stride = 1
        self.frames_seen = 0
        self._arrivals = 0
        self._on_stride: list[Entry] = []  # frame numbers 0, stride, 2*stride, ...
        self._newest: Entry | None = None  # the newest frame when it is off the stride
        self._events: deque[Entry] = deque(maxlen=capacity)

    def append(self, text: str, is_frame: bool) -> None:
        entry = (self._arrivals, text)
        self._arrivals += 1
        if not is_frame:
            self._events.append(entry)
            return
        number = self.frames_seen
        self.frames_seen += 1
        if number % self.stride:
            self._newest = entry
            return
        self._newest = None
        self._on_stride.append(entry)
        # capacity - 1 on the stride leaves room for an off-stride newest frame.
        while len(self._on_stride) > self.capacity - 1:
            self.stride *= 2
            # Kept frame i has number i * old_stride: the even i are the new stride's multiples.
            self._on_stride = self._on_stride[::2]
            if self._on_stride[-1] is not entry:
                self._newest = entry

    def __len__(self) -> int:
        return len(self._on_stride) + (self._newest is not None) + len(self._events)

    @property
    def frame_count(self) -> int:
        """Frames held now (at most capacity)."""
        return len(self._on_stride) + (self._newest is not None)

    def snapshot(self) -> list[str]:
        """Every message held, oldest first."""
        frames = self._on_stride if self._newest is None else [*self._on_stride, self._newest]
        return [text for _, text in heapq.merge(frames, self._events)]
