"""/docs and /redoc work offline under the server's own CSP: every script, style and icon
comes from this server, none inline, each served with its content type."""

from __future__ import annotations

from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import serverkit
from covshift.web.app import create_app
from covshift.web.security import CONTENT_SECURITY_POLICY
from fastapi.testclient import TestClient

CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".ico": "image/svg+xml"}


class PageAssets(HTMLParser):
    """What a page makes the browser load or run: URLs, inline scripts, event handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self.handlers: list[str] = []
        self.data: dict[str, str] = {}
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {name: value or "" for name, value in attrs}
        self.urls += [found[name] for name in ("src", "href") if name in found]
        self.handlers += [name for name in found if name.startswith("on")]
        self.data.update({name: value for name, value in found.items() if name.startswith("data-")})
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append(data)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    settings = serverkit.settings(tmp_path_factory.mktemp("docs"))
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_csp_allows_no_inline_script_and_no_other_origin() -> None:
    directives = dict(part.strip().split(" ", 1) for part in CONTENT_SECURITY_POLICY.split(";"))
    assert directives["script-src"] == "'self'"
    assert "http" not in CONTENT_SECURITY_POLICY.replace("https:", "").replace("http:", "")


@pytest.mark.parametrize("docs_page", ["/docs", "/redoc"])
def test_the_docs_page_loads_only_its_own_assets(client: TestClient, docs_page: str) -> None:
    response = client.get(docs_page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assets = PageAssets()
    assets.feed(response.text)
    assert assets.inline == [] and assets.handlers == []  # the CSP would block them
    scripts = [url for url in assets.urls if url.endswith(".js")]
    assert len(scripts) == 2  # the viewer and the script that starts it
    for url in assets.urls:
        assert url.startswith("/") and not urlsplit(url).netloc, url  # same origin
        asset = client.get(url)
        assert asset.status_code == 200, url
        expected = CONTENT_TYPES[Path(urlsplit(url).path).suffix]
        assert asset.headers["content-type"].startswith(expected), url
        assert len(asset.content) > 0  # gzipped in transit: no content-length
    starter = client.get(scripts[-1]).text
    assert "http:" not in starter and "https:" not in starter
    schema = client.get(assets.data["data-openapi-url"])  # the starter reads it from the page
    assert schema.status_code == 200 and schema.json()["info"]["title"] == "covshift"


def test_unknown_docs_assets_are_404(client: TestClient) -> None:
    for name in ("nope.js", "..%2f..%2fpyproject.toml", "%2e%2e/app.py"):
        assert client.get(f"/docs/assets/{name}").status_code == 404
