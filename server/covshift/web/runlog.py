"""A live run's frames.jsonl: appended in arrival order from the pump's thread; a failed
write ends the storing for good and says why, so the run can be failed with that reason."""

from __future__ import annotations

import contextlib
import logging

from .store import FramesLog

log = logging.getLogger(__name__)


class RunLog:
    """Appends a run's message lines; `error` is set once a write failed (disk full, ...)."""

    def __init__(self, run_id: str, frames: FramesLog | None) -> None:
        self.run_id = run_id
        self._frames = frames  # None: a run kept in memory only
        self.error: str | None = None

    def append(self, texts: list[str]) -> None:
        """What was written before a failure stays readable; nothing is written after it."""
        if self._frames is None:
            return
        try:
            self._frames.append(texts)
        except OSError as exc:
            log.error("run %s: writing %s failed: %s", self.run_id, self._frames.path, exc)
            self.error = (
                f"the run's frames could not be written ({exc.strerror or exc}); "
                "it was stopped, the frames written before are kept"
            )
            with contextlib.suppress(OSError):  # closing flushes the same buffer again
                self._frames.close()
            self._frames = None

    def close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
