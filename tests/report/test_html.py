"""The HTML report: every section, every referenced file present, static and self-contained."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from skintl.report.context import PAD_UFES_CITATION, protocol_context
from skintl.report.stage import read_config

SECTIONS = [
    "protocol",
    "data",
    "results",
    "comparison",
    "layer-effect",
    "per-patient",
    "confusion",
    "roc",
    "embeddings",
    "files",
]


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "img":
            self.srcs.append(str(a.get("src")))
        if tag in ("a", "link") and a.get("href"):
            self.hrefs.append(str(a["href"]))


@pytest.fixture(scope="module")
def parsed(fake_report: Path) -> tuple[str, _Links]:
    html = fake_report.read_text()
    links = _Links()
    links.feed(html)
    return html, links


def test_every_section_is_there(parsed: tuple[str, _Links]) -> None:
    _, links = parsed
    assert [i for i in links.ids if i in SECTIONS] == SECTIONS


def test_every_referenced_file_exists_and_links_are_relative(
    fake_report: Path, parsed: tuple[str, _Links]
) -> None:
    html, links = parsed
    assert links.srcs, "no images"
    for ref in links.srcs + [h for h in links.hrefs if not h.startswith("#")]:
        assert not re.match(r"^[a-z]+:|^/", ref), f"not a relative link: {ref}"
        target = fake_report.parent / ref
        assert target.is_file() and target.stat().st_size > 0, ref
    assert "script" not in links.tags and "@import" not in html and "url(" not in html
    assert "http://" not in html and "https://" not in html


def test_images_cover_every_figure_kind(parsed: tuple[str, _Links]) -> None:
    _, links = parsed
    names = [Path(s).name for s in links.srcs]
    assert "critical_difference.png" in names and "patches.png" in names
    assert "per_patient_mlp.png" in names and "per_patient_best.png" in names
    assert "per_patient_baselines.png" in names
    # the best cell of every encoder, the baseline without features included
    for best in ("enc_a__layer1__mlp", "enc_b__layer2__mlp", "baseline__-__lbp_yiq_svm"):
        assert f"confusion_{best}.png" in names and f"roc_{best}.png" in names
    # an embedding per feature set; none for the cell without features
    embeddings = sorted(n for n in names if n.startswith("embedding_"))
    assert embeddings == ["embedding_enc_a.png", "embedding_enc_b.png", "embedding_lbp_yiq.png"]


def test_tables_show_cis_best_values_citation_and_tests(parsed: tuple[str, _Links]) -> None:
    html, _ = parsed
    assert re.search(r'class="num best">1\.000 <span class="ci">\[1\.000, 1\.000\]', html)
    assert html.count('class="main"') == 3  # one table per classifier: mlp, lbp_yiq_svm, svm_rbf
    assert "Pacheco" in html and "Data in Brief 32" in html and "CC BY 4.0" in html
    assert "Friedman &chi;&sup2; =" in html and "enc_a/layer1/mlp" in html
    assert "leave one patient out, 6 folds" in html
    assert "baseline/-/lbp_yiq_svm" in html  # listed among the baselines of the protocol
    assert "{{" not in html and "{%" not in html


def test_no_citation_for_other_data(fake_run: Path) -> None:
    cfg = read_config(fake_run)
    index = pd.read_parquet(fake_run / "patches" / "index.parquet")
    ctx = protocol_context(fake_run, cfg, index, {}, 10, 0.05, 0)
    assert ctx["citation"] == PAD_UFES_CITATION
    cfg["data"]["root"] = "/data/other-set"
    assert protocol_context(fake_run, cfg, index, {}, 10, 0.05, 0)["citation"] is None
    assert ctx["data"]["per_class"][0] == {"cls": "AK", "patches": 18, "patients": 6}
