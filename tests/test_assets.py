"""Static assets: plotly.min.js gzipped once with an ETag, the rest compressed per response."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import pytest
import serverkit
from covshift.web.app import create_app, plotly_js
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = serverkit.settings(tmp_path_factory.mktemp("logs"))
    with TestClient(create_app(settings)) as client:
        yield client


def test_plotly_is_sent_gzipped_with_an_etag_and_revalidates_to_304(client: TestClient) -> None:
    found = plotly_js()
    assert found is not None
    raw = found.read_bytes()
    # The transport decodes; read the bytes as they travelled.
    with client.stream("GET", "/vendor/plotly.min.js", headers={"accept-encoding": "gzip"}) as r:
        assert r.status_code == 200
        sent = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "accept-encoding"
    assert gzip.decompress(sent) == raw
    assert len(sent) < len(raw) / 2.5  # 4.4 MB of JavaScript compresses about 3x
    etag = r.headers["etag"]
    again = client.get("/vendor/plotly.min.js", headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    plain = client.get("/vendor/plotly.min.js", headers={"accept-encoding": "identity"})
    assert "content-encoding" not in plain.headers and plain.content == raw


def test_page_files_and_json_are_compressed_and_the_page_revalidates(client: TestClient) -> None:
    with client.stream("GET", "/js/messages.js", headers={"accept-encoding": "gzip"}) as r:
        sent = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip" and r.headers["cache-control"] == "no-cache"
    source = Path(__file__).resolve().parent.parent / "frontend" / "js" / "messages.js"
    assert gzip.decompress(sent) == source.read_bytes()
    assert (
        client.get("/js/messages.js", headers={"if-none-match": r.headers["etag"]}).status_code
        == 304
    )
    rules = client.get("/api/rules", headers={"accept-encoding": "gzip"})
    assert rules.headers["content-encoding"] == "gzip" and rules.json()["bounds"]
    # Tiny answers are not worth compressing.
    health = client.get("/healthz", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in health.headers
