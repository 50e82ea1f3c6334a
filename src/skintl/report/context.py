"""What the HTML template shows, as plain strings and lists (formatting only, no computation)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from skintl.report.stats_tables import CI_METRICS, StatsTables

PAD_UFES_CITATION = (
    "PAD-UFES-20: Pacheco, A. G. C. et al., “PAD-UFES-20: a skin lesion dataset composed of "
    "patient data and clinical images collected from smartphones”, Data in Brief 32 (2020) "
    "106221, doi:10.1016/j.dib.2020.106221; licensed CC BY 4.0."
)
PATCH_KEYS = ("size", "stride", "min_lesion_fraction", "healthy_margin", "max_per_image_class")
SPLIT_NAMES = {
    "stratified_group_kfold": "stratified group k-fold (patients as groups)",
    "group_kfold": "group k-fold (patients as groups)",
    "leave_one_patient_out": "leave one patient out",
}


def fmt(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; ``–`` for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{float(value):.{digits}f}"


def fmt_p(p: Any) -> str:
    """A p-value with 3 significant digits; ``–`` for None or NaN."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "–"
    return f"{float(p):.3g}"


def _settings(d: Any) -> str:
    if not isinstance(d, dict) or not d:
        return ""
    return ", ".join(f"{k} = {v}" for k, v in d.items())


def data_summary(index: pd.DataFrame, classes: list[str]) -> dict[str, Any]:
    """Patches and patients per class, and a patients x classes count table."""
    counts = pd.crosstab(index["patient_id"], index["class"]).reindex(columns=classes, fill_value=0)
    per_class = [
        {"cls": c, "patches": int(counts[c].sum()), "patients": int((counts[c] > 0).sum())}
        for c in classes
    ]
    rows = [
        [str(p), *map(int, r), int(sum(r))]
        for p, r in zip(counts.index, counts.values, strict=True)
    ]
    return {
        "per_class": per_class,
        "n_patches": len(index),
        "n_patients": int(index["patient_id"].nunique()),
        "patient_rows": rows,
    }


def protocol_context(
    run_dir: Path,
    cfg: dict[str, Any],
    index: pd.DataFrame,
    metas: dict[str, dict[str, Any] | None],
    n_boot: int,
    alpha: float,
    seed: int,
) -> dict[str, Any]:
    """The protocol section: data, patches, splits, classifiers, encoders, seeds."""
    data, patches = cfg.get("data") or {}, cfg.get("patches") or {}
    feats, ev = cfg.get("features") or {}, cfg.get("evaluation") or {}
    splits = ev.get("splits") or {}
    classes = [str(c) for c in cfg.get("classes", [])]
    folds_path = run_dir / "evaluation" / "folds.parquet"
    n_folds = int(pd.read_parquet(folds_path)["fold"].nunique()) if folds_path.is_file() else None
    manifest = run_dir / "manifest.parquet"
    encoders = []
    for e in feats.get("encoders", []):
        meta = metas.get(str(e.get("name"))) or {}
        prov = _settings(meta.get("provenance")) or "–"
        encoders.append({**{k: str(v) for k, v in e.items()}, "provenance": prov})
    root = data.get("root")
    return {
        "name": cfg.get("name", run_dir.name),
        "run_dir": str(run_dir),
        "seed": cfg.get("seed"),
        "classes": classes,
        "source": data.get("source", "–"),
        "root": root,
        "source_settings": _settings(data.get("synthetic"))
        if data.get("source") == "synthetic"
        else "",
        "citation": PAD_UFES_CITATION if root and "pad-ufes" in str(root).lower() else None,
        "n_photos": len(pd.read_parquet(manifest, columns=[])) if manifest.is_file() else None,
        "patches": {k: patches.get(k) for k in PATCH_KEYS},
        "split_kind": SPLIT_NAMES.get(str(splits.get("kind")), str(splits.get("kind"))),
        "n_splits": None
        if splits.get("kind") == "leave_one_patient_out"
        else splits.get("n_splits"),
        "n_folds": n_folds,
        "validation_fraction": splits.get("validation_fraction"),
        "classifiers": [
            {"name": c, "settings": _settings(ev.get(c))} for c in ev.get("classifiers", [])
        ],
        "encoders": encoders,
        "layers": _layers_text(feats),
        "input_size": feats.get("input_size"),
        "n_boot": n_boot,
        "alpha": alpha,
        "coverage": f"{100 * (1 - alpha):g}",
        "report_seed": seed,
        "data": data_summary(index, classes),
    }


def _main_groups(main: pd.DataFrame) -> list[dict[str, Any]]:
    groups = []
    for clf, g in main.groupby("classifier", sort=False):
        best = {m: g[m].max() for m in CI_METRICS}
        rows = []
        for r in g.to_dict("records"):
            values = [
                {
                    "value": fmt(r[m]),
                    "ci": f"[{fmt(r[f'{m}_low'])}, {fmt(r[f'{m}_high'])}]",
                    "best": bool(r[m] == best[m]),
                }
                for m in CI_METRICS
            ]
            keys = ("encoder", "layer", "n", "n_patients")
            rows.append({k: r[k] for k in keys} | {"values": values})
        groups.append({"classifier": clf, "rows": rows})
    return groups


def _friedman(tables: StatsTables) -> dict[str, Any] | None:
    res = tables.friedman
    if res is None:
        return None
    ranks = [
        {"rank": i, "name": name, "mean_rank": fmt(r, 2), "median": fmt(m)}
        for i, ((name, r), m) in enumerate(zip(res.mean_ranks.items(), res.medians, strict=True), 1)
    ]
    sig = res.pairwise[res.pairwise["significant"]]
    pairs = [
        {"a": a, "b": b, "diff": fmt(d), "p": fmt_p(p), "p_holm": fmt_p(ph)}
        for a, b, d, p, ph in sig[["a", "b", "median_diff", "p", "p_holm"]].itertuples(index=False)
    ]
    return {
        "statistic": fmt(res.statistic, 2),
        "p": fmt_p(res.p_value),
        "n_blocks": res.n_blocks,
        "n_configs": len(res.mean_ranks),
        "cd": fmt(res.critical_difference, 2),
        "alpha": res.alpha,
        "ranks": ranks,
        "pairs": pairs,
        "n_pairs": len(res.pairwise),
        "summary": res.summary,
    }


def _layer_effect(table: pd.DataFrame) -> list[dict[str, str]]:
    rows = []
    for r in table.to_dict("records"):
        rows.append(
            {
                "classifier": str(r.get("classifier", "")),
                "encoder": str(r.get("encoder", "")),
                "best_layer": str(r.get("best_layer", "–")),
                "best_mean": fmt(r.get("best_mean")),
                "test": str(r.get("test", "–")),
                "statistic": fmt(r.get("statistic"), 2),
                "p": fmt_p(r.get("p")),
                "n_blocks": str(r.get("n_blocks", "–")),
                "mean_ranks": str(r.get("mean_ranks") or "–"),
                "note": str(r.get("note") or ""),
            }
        )
    return rows


def table_context(tables: StatsTables) -> dict[str, Any]:
    """The results sections: main table by classifier, Friedman, layer effect."""
    return {
        "metrics": list(CI_METRICS.values()),
        "main_groups": _main_groups(tables.main),
        "friedman": _friedman(tables),
        "friedman_note": tables.friedman_note,
        "layer_effect": _layer_effect(tables.layer_effect),
    }


def run_warnings(run_dir: Path) -> list[str]:
    """Warnings a reader must see: classifiers that did not converge, shared patients."""
    out = []
    for path in sorted((run_dir / "evaluation").glob("*/*/*/metrics.json")):
        warned = json.loads(path.read_text()).get("warnings", {})
        total = warned.get("total", {})
        if not total:
            continue
        cell = "/".join(path.parent.relative_to(run_dir / "evaluation").parts)
        counts = ", ".join(f"{n} {k}" for k, n in sorted(total.items()))
        folds = ", ".join(str(f["fold"]) for f in warned.get("folds", []))
        out.append(f"cell {cell}: {counts} (folds {folds}; details in its metrics.json)")
    for path in sorted((run_dir / "pretrain").glob("*/overlap.json")):
        o = json.loads(path.read_text())
        if o.get("shared_patients"):
            out.append(
                f"pre-training run {path.parent.name} shares {o['shared_patients']} of the "
                f"study's {o['study_patients']} patients with its source set "
                "(allow_shared_patients: true): its encoder saw skin of patients it is tested on"
            )
    for path in sorted((run_dir / "features").glob("*/overlap.json")):
        o = json.loads(path.read_text())
        out.append(
            f"encoder {path.parent.name} ({o['weights']}) was pre-trained on "
            f"{o['shared_patients']} of the study's patients (allow_shared_patients: true): it "
            "saw skin of patients it is tested on"
        )
    return out


def _layers_text(feats: dict[str, Any]) -> list[str]:
    """The study's layers as the protocol lists them; per-encoder lists named with their encoder."""

    def text(layers: Any) -> str:
        return "every tap" if layers == "all" else ", ".join(map(str, layers))

    out = [text(feats.get("layers", []))]
    out += [f"{e['name']}: {text(e['layers'])}" for e in feats.get("encoders", [])
            if e.get("layers") is not None]  # fmt: skip
    return out
