"""The report opened from disk in headless Chromium: no errors, tables and every image rendered.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$SKINTL_CHROMIUM``) and the
``playwright`` Python package; skips with the reason when either is missing. Playwright's own
browser download is never used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str | None:
    """The Chromium binary to drive: ``$SKINTL_CHROMIUM``, ``/usr/bin/chromium``, or on PATH."""
    for cand in (os.environ.get("SKINTL_CHROMIUM"), "/usr/bin/chromium"):
        if cand and Path(cand).is_file():
            return cand
    return shutil.which("chromium") or shutil.which("chromium-browser")


pytestmark = pytest.mark.skipif(
    chromium_path() is None,
    reason="Chromium not found: apt-get install chromium (or set $SKINTL_CHROMIUM)",
)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install playwright"
)


def render(html: Path, screenshot: Path) -> dict[str, Any]:
    """Open ``html`` via file://, collect errors and what was rendered, save a full-page PNG."""
    exe = chromium_path()
    assert exe is not None
    errors: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("requestfailed", lambda r: errors.append(f"failed: {r.url}"))
            page.goto(html.resolve().as_uri(), wait_until="load")
            state = page.evaluate(
                """() => ({
                    images: [...document.images].map(i => ({src: i.getAttribute('src'),
                        complete: i.complete, width: i.naturalWidth, shown: i.offsetWidth})),
                    tables: [...document.querySelectorAll('table')].map(t => ({
                        rows: t.rows.length, height: t.offsetHeight,
                        hidden: t.closest('details:not([open])') !== null})),
                    title: document.title,
                })"""
            )
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return {**state, "errors": errors}


def test_report_renders_in_headless_chromium(fake_report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    state = render(fake_report, shot)
    assert state["errors"] == []
    assert state["title"].startswith("skintl report")
    images = state["images"]
    assert len(images) >= 10
    broken = [i["src"] for i in images if not i["complete"] or i["width"] == 0 or i["shown"] == 0]
    assert broken == []
    tables = state["tables"]
    assert len(tables) >= 6 and all(t["rows"] >= 2 for t in tables)
    assert all(t["height"] > 0 for t in tables if not t["hidden"])
    assert shot.is_file() and shot.stat().st_size > 50_000
