"""The report opened from disk in headless Chromium: no errors, tables and every image rendered.

Needs Debian's ``chromium`` (``/usr/bin/chromium``, or ``$SKINTL_CHROMIUM``) and the
``playwright`` Python package; skips with the reason when either is missing. Playwright's own
browser download is never used.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

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
            # lazy images below the fold load only when scrolled to: load them all now
            page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
            page.wait_for_function("[...document.images].every(i => i.complete)", timeout=10_000)
            state = page.evaluate(
                """() => ({
                    images: [...document.images].map(i => ({src: i.getAttribute('src'),
                        complete: i.complete, width: i.naturalWidth, shown: i.offsetWidth})),
                    tables: [...document.querySelectorAll('table')].map(t => ({
                        rows: t.rows.length, height: t.offsetHeight,
                        hidden: t.closest('details:not([open])') !== null})),
                    title: document.title,
                    nav: [...document.querySelectorAll('nav a')].map(a => a.getAttribute('href')),
                    sections: [...document.querySelectorAll('section[id]')].map(e => e.id),
                    injected: document.querySelectorAll('img[src="x"], b, i, script').length,
                    text: document.body.innerText,
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
    assert set(state["nav"]) == {f"#{i}" for i in state["sections"]}  # a link to every section


#: outside data holding markup: a photo's file name, a class label and a patient id
PHOTO = "<img src=x onerror=alert(1)>.png"
LABEL = "<i>SK</i>"
PATIENT = "<b>P1</b>"


def _hostile(run: Path) -> None:
    """Rename in a fake run patient P1, its photo and the class SK into markup; add a scan."""
    names = {"P1": PATIENT, "SK": LABEL, "P1.png": PHOTO}
    for path in run.rglob("*.parquet"):
        df = pd.read_parquet(path)
        for col in ("patient_id", "class", "y_true", "y_pred", "image", "image_path"):
            if col in df:
                df[col] = df[col].map(lambda v: names.get(v, v))
        pd.DataFrame.to_parquet(df.rename(columns={"prob_SK": f"prob_{LABEL}"}), path, index=False)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["classes"] = [names.get(c, c) for c in cfg["classes"]]
    (run / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _fake_scan(run / "scan")


def _fake_scan(scan: Path) -> None:
    """scan/: a summary of two modes x two classes, photos, and the dense mode's page."""
    from skintl.scan.run import scan_html

    stats = {"n_photos": 3, "mean": 0.5, "ci_low": 0.4, "ci_high": 0.6, "median": 0.5,
             "median_ci_low": 0.4, "median_ci_high": 0.6}  # fmt: skip
    summary = pd.DataFrame([{"mode": m, "target_class": c, "metric": k, **stats}
                            for m in ("dense", "exact") for c in ("AK", LABEL)
                            for k in ("dice", "region_sensitivity")])  # fmt: skip
    scan.mkdir(parents=True)
    summary.to_csv(scan / "summary.csv", index=False)
    photos = [f"/photos/{PHOTO}", "/photos/P2.png", "/photos/P3.png"]
    table = pd.DataFrame({
        "photo": photos, "patient_id": [PATIENT, "P2", "P3"], "mode": "dense",
        "target_class": LABEL, "dice": [0.9, 0.5, 0.1], "leak_warning": "", "pred_floods": 0,
        "skin_pct": [60.0, 0.5, 70.0], "no_skin": [False, True, False], "error": "",
    })  # fmt: skip
    table.to_csv(scan / "photos.csv", index=False)
    (scan / "dense").mkdir()
    table.to_csv(scan / "dense" / "scan_metrics.csv", index=False)
    for photo in photos:
        for kind in ("overlay", "heatmap"):
            Image.fromarray(np.full((40, 60, 3), 200, np.uint8)).save(
                scan / "dense" / f"{Path(photo).stem}_{kind}.png"
            )
    bundle = SimpleNamespace(meta={"arch": "resnet18", "layer": "layer2", "classifier": "mlp",
                                   "study": "fake", "feature_mode": "dense", "patch_size": 32,
                                   "training_patients": ["P2", "P3"]})  # fmt: skip
    (scan / "dense" / "index.html").write_text(scan_html(table, bundle))  # type: ignore[arg-type]


def test_markup_in_names_shows_as_text_on_every_page(
    fake_run_template: Path, tmp_path: Path
) -> None:
    from threadpoolctl import threadpool_limits

    from skintl.report.html import write_report

    run = Path(shutil.copytree(fake_run_template, tmp_path / "run"))
    _hostile(run)
    with threadpool_limits(limits=1):
        report = write_report(run, n_boot=20)
    pages = {"report": report, "scan": run / "scan" / "dense" / "index.html"}
    for name, page in pages.items():
        state = render(page, tmp_path / f"{name}.png")
        assert state["errors"] == [], name
        assert state["injected"] == 0, name  # no element made from a name
        broken = [i["src"] for i in state["images"] if not i["complete"] or i["width"] == 0]
        assert broken == [], name
        assert LABEL in state["text"] and PHOTO.removesuffix(".png") in state["text"], name
    scan_page = render(pages["scan"], tmp_path / "scan2.png")
    assert PATIENT in scan_page["text"] and "No skin" in scan_page["text"]
    report_state = render(report, tmp_path / "report2.png")
    assert (
        "Whole photos" in report_state["text"] and f"Target class {LABEL}" in report_state["text"]
    )
    assert "../scan/dense/scan_metrics.csv" in report_state["text"]  # the Files list
    assert set(report_state["nav"]) == {f"#{i}" for i in report_state["sections"]}
