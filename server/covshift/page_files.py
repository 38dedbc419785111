"""Where the page's files are: frontend/ in a source tree, covshift/frontend once installed;
plotly.js's basic bundle among them, which the page loads and every report inlines."""

from __future__ import annotations

from pathlib import Path

# plotly.js 4.1.1's basic bundle (scatter, bar and pie, with error bars: all the page and the
# reports draw), from npm's plotly.js-basic-dist-min: a quarter of the full bundle's size,
# and it runs in ~0.3 s where the full one takes ~1 s before the page can start.
PLOTLY_BASIC = "plotly-basic.min.js"


def frontend_dir() -> Path | None:
    """The page's files: frontend/ at the repository root (source tree), else the copy
    packaged as covshift/frontend (installed wheel); None when neither exists."""
    package = Path(__file__).resolve().parent  # covshift/
    for candidate in (package.parent.parent / "frontend", package / "frontend"):
        if (candidate / "index.html").is_file():
            return candidate
    return None


def plotly_basic() -> Path | None:
    """plotly.js's basic bundle, shipped with the page (frontend/vendor), so it works offline."""
    page = frontend_dir()
    path = page / "vendor" / PLOTLY_BASIC if page is not None else None
    return path if path is not None and path.is_file() else None
