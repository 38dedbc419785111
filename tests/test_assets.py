"""Static assets: plotly.js gzipped once with an ETag, the rest compressed per response."""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import serverkit
from covshift.page_files import plotly_basic
from covshift.web.app import create_app
from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = serverkit.settings(tmp_path_factory.mktemp("logs"))
    with TestClient(create_app(settings)) as client:
        yield client


def test_plotly_is_sent_gzipped_with_an_etag_and_revalidates_to_304(client: TestClient) -> None:
    found = plotly_basic()
    assert found is not None
    raw = found.read_bytes()
    # The transport decodes; read the bytes as they travelled.
    url = "/vendor/plotly-basic.min.js"
    with client.stream("GET", url, headers={"accept-encoding": "gzip"}) as r:
        assert r.status_code == 200
        sent = b"".join(r.iter_raw())
    assert r.headers["content-encoding"] == "gzip" and r.headers["vary"] == "accept-encoding"
    assert gzip.decompress(sent) == raw
    assert len(sent) < len(raw) / 2.5  # 1.2 MB of JavaScript compresses about 3x
    etag = r.headers["etag"]
    again = client.get(url, headers={"if-none-match": etag})
    assert again.status_code == 304 and again.content == b""
    plain = client.get(url, headers={"accept-encoding": "identity"})
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


# plotly.js's trace types that its basic bundle (scatter, bar, pie) leaves out.
NOT_IN_THE_BASIC_BUNDLE = {
    "barpolar", "box", "candlestick", "carpet", "choropleth", "choroplethmap", "choroplethmapbox",
    "cone", "contour", "contourcarpet", "densitymap", "densitymapbox", "funnel", "funnelarea",
    "heatmap", "histogram", "histogram2d", "histogram2dcontour", "icicle", "image", "indicator",
    "isosurface", "mesh3d", "ohlc", "parcats", "parcoords", "sankey", "scatter3d",
    "scattercarpet", "scattergeo", "scattergl", "scattermap", "scattermapbox", "scatterpolar",
    "scatterpolargl", "scattersmith", "scatterternary", "splom", "streamtube", "sunburst",
    "surface", "table", "treemap", "violin", "volume", "waterfall",
}  # fmt: skip


def test_the_page_and_the_reports_draw_only_trace_types_their_plotly_bundle_has() -> None:
    # A chart of a type the bundle lacks would stay empty ("trace type not found").
    found = plotly_basic()
    assert found is not None and found.name == "plotly-basic.min.js"
    assert "plotly.js (basic - minified)" in found.read_text(encoding="utf-8")[:200]
    root = Path(__file__).resolve().parent.parent
    sources = {
        "page": (root / "frontend" / "js", "*.js", r'\btype: "(\w+)"'),
        "reports": (root / "server" / "covshift" / "reports", "*.py", r'"type": "(\w+)"'),
    }
    for name, (folder, pattern, trace_type) in sources.items():
        used = {
            kind
            for path in folder.rglob(pattern)
            for kind in re.findall(trace_type, path.read_text(encoding="utf-8"))
        }
        assert "scatter" in used and not used & NOT_IN_THE_BASIC_BUNDLE, (name, used)
