"""Static assets served small: the page's files and plotly.js, compressed and cached.

plotly.js's basic bundle is 1.2 MB and the same for every tab: it is gzipped once (off the
event loop, on first request) and kept, with an ETag, so a new tab costs ~0.4 MB and a
reload a 304. Everything else (the page's own files, JSON, exports) goes through Starlette's
GZipMiddleware, which compresses per response; the page's files are revalidated on each
load (`no-cache` + ETag), so a new version of the server is never hidden by a cache.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.staticfiles import StaticFiles

# Compressing every response of at least this many bytes; smaller ones gain nothing.
GZIP_MINIMUM_BYTES = 1024
# Level 6 (gzip's default) gets plotly.js within 2% of level 9 at a third of the time.
GZIP_LEVEL = 6
# A day: the vendor file changes only with a new covshift; the ETag catches that.
VENDOR_MAX_AGE_S = 86_400


@dataclass(frozen=True)
class Packed:
    """One file's bytes, gzipped, and its ETag (from its contents)."""

    raw: bytes
    gzipped: bytes
    etag: str


def pack(path: Path) -> Packed:
    raw = path.read_bytes()
    etag = '"' + hashlib.sha256(raw).hexdigest()[:32] + '"'
    return Packed(raw, gzip.compress(raw, compresslevel=GZIP_LEVEL, mtime=0), etag)


def accepts_gzip(request: Request) -> bool:
    codings = request.headers.get("accept-encoding", "")
    return any(part.split(";")[0].strip() == "gzip" for part in codings.split(","))


class VendorFile:
    """A large, rarely changing file, compressed once and answered from memory."""

    def __init__(self, path: Path, media_type: str) -> None:
        self.path = path
        self.media_type = media_type
        self._packed: Packed | None = None
        self._lock = asyncio.Lock()

    async def packed(self) -> Packed:
        async with self._lock:  # one compression, however many tabs open at once
            if self._packed is None:
                self._packed = await asyncio.to_thread(pack, self.path)
            return self._packed

    async def response(self, request: Request) -> Response:
        packed = await self.packed()
        headers = {
            "cache-control": f"max-age={VENDOR_MAX_AGE_S}",
            "etag": packed.etag,
            "vary": "accept-encoding",
        }
        if request.headers.get("if-none-match") == packed.etag:
            return Response(status_code=304, headers=headers)
        if accepts_gzip(request):
            headers["content-encoding"] = "gzip"
            return Response(packed.gzipped, media_type=self.media_type, headers=headers)
        return Response(packed.raw, media_type=self.media_type, headers=headers)


class PageFiles(StaticFiles):
    """The page's own files: always revalidated (a 304 when unchanged), so a reload after
    an upgrade never mixes old and new modules."""

    def file_response(self, *args: object, **kwargs: object) -> Response:
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.setdefault("cache-control", "no-cache")
        return response
