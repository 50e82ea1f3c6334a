"""The report's ink section: counts per label and a mosaic of the most inked photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from skimage.draw import circle_perimeter

from skintl.data.ink import ink_mask
from skintl.io import write_parquet
from skintl.report.ink import ink_context, pick_photos


def _photos(folder: Path, n: int, inked: set[int]) -> list[Path]:
    """``n`` skin-coloured 120 px photos; those in ``inked`` circled with violet pen."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    paths = []
    for i in range(n):
        img = np.clip(rng.normal((200, 150, 130), 4, (120, 120, 3)), 0, 255).astype(np.uint8)
        if i in inked:
            for r in (40, 41, 42):
                img[circle_perimeter(60, 60, r)] = (140, 109, 119)
        paths.append(folder / f"photo{i}.png")
        Image.fromarray(img).save(paths[-1])
    return paths


def _manifest(paths: list[Path], labels: list[str]) -> pd.DataFrame:
    frac = [float(ink_mask(np.asarray(Image.open(p))).mean()) for p in paths]
    m = pd.DataFrame({"image_path": list(map(str, paths)), "labels": labels, "ink_fraction": frac})
    return m.assign(has_ink=m["ink_fraction"] > 0.002)


def test_pick_photos_takes_the_most_inked_then_clean_ones() -> None:
    m = pd.DataFrame(
        {
            "image_path": list("abcdef"),
            "ink_fraction": [0.05, 0.0, 0.2, 0.001, 0.0, 0.1],
            "has_ink": [True, False, True, False, False, True],
        }
    )
    picked = pick_photos(m, n_ink=2, n_clean=5, seed=0)
    assert picked["image_path"].tolist()[:2] == ["c", "f"]
    assert sorted(picked["image_path"].tolist()[2:]) == ["b", "e"]  # d has ink below the limit


def test_ink_section_counts_per_label_and_draws_the_mosaic(tmp_path: Path) -> None:
    paths = _photos(tmp_path / "photos", 5, inked={0, 1, 3})
    manifest = _manifest(paths, ["ACK", "ACK", "ACK", "SEK", "SEK"])
    assert manifest["has_ink"].tolist() == [True, True, False, True, False]
    run = tmp_path / "run"
    write_parquet(manifest, run / "manifest.parquet")
    cfg = {"data": {"ink": {"min_fraction": 0.002}}, "patches": {"exclude": {"ink": True}}}
    ctx = ink_context(run, cfg, tmp_path / "fig", seed=0)
    assert ctx is not None
    assert ctx["counts"] == [
        {"label": "ACK", "photos": 3, "with_ink": 2, "share": "67%"},
        {"label": "SEK", "photos": 2, "with_ink": 1, "share": "50%"},
    ]
    assert ctx["excluded"] and ctx["min_fraction"] == 0.2
    mosaic = Image.open(tmp_path / "fig" / ctx["mosaic"])
    assert mosaic.size[0] > 400


def test_no_ink_section_without_ink_columns(fake_run: Path, tmp_path: Path) -> None:
    assert ink_context(fake_run, {}, tmp_path, seed=0) is None


def test_report_shows_the_ink_section(fake_run: Path, tmp_path: Path) -> None:
    from threadpoolctl import threadpool_limits

    from skintl.report.html import write_report

    paths = _photos(tmp_path / "photos", 6, inked={2})
    patients = pd.read_parquet(fake_run / "manifest.parquet")["patient_id"]
    manifest = _manifest(paths, ["ACK"] * 6).assign(patient_id=patients)
    write_parquet(manifest, fake_run / "manifest.parquet")
    with threadpool_limits(limits=1):
        html = write_report(fake_run, n_boot=20).read_text()
    section = html[html.index('<section id="ink">') : html.index('<section id="results">')]
    assert '<td>ACK</td><td class="num">6</td><td class="num">1</td>' in section
    assert 'src="figures/ink_mosaic.png"' in section
    assert (fake_run / "report" / "figures" / "ink_mosaic.png").is_file()
