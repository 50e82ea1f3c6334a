"""Whole-photo maps on PAD-UFES-20: the README's table and the acceptance targets.

Reads the scan stage of a finished run of ``configs/pad-ufes-maps.yaml`` (every full-resolution
ACK / SEK photo scanned by the bundle of the fold that held its patient out) and prints, per
target class and mode: median and mean Dice, region sensitivity (IoU >= the configured
threshold, and any overlap), region specificity, absolute burden error (points of skin union
doctor's region), floods, each with its patient-bootstrap 95% CI (``scan/summary.csv``); then
the paired differences of every mode against exact and of the cell head against dense
(``scan/mode_differences.csv``), flagging any where the CI lies wholly on the worse side; and
the targets of the maps issue (AK median Dice >= 0.50, SK >= 0.80, mean absolute burden error
<= 5, region sensitivity >= 0.80, region specificity >= 0.90), met or not.

    python benchmarks/maps_study.py RUN_DIR
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

#: metric -> (label, True when higher is better)
METRICS = {
    "dice": ("Dice", True),
    "region_sensitivity": ("region sens.", True),
    "region_sensitivity_any": ("region sens. (any overlap)", True),
    "region_specificity": ("region spec.", True),
    "burden_abs_error_pct": ("abs. burden error", False),
    "burden_error_pct": ("burden error", None),
    "flooded": ("photos with a flood", False),
}
#: (class, metric, statistic, bound, higher is better) of the maps issue's acceptance
TARGETS = [
    ("AK", "dice", "median", 0.50, True), ("SK", "dice", "median", 0.80, True),
    ("AK", "burden_abs_error_pct", "mean", 5.0, False),
    ("SK", "burden_abs_error_pct", "mean", 5.0, False),
    ("AK", "region_sensitivity", "mean", 0.80, True),
    ("SK", "region_sensitivity", "mean", 0.80, True),
    ("AK", "region_specificity", "mean", 0.90, True),
    ("SK", "region_specificity", "mean", 0.90, True),
]  # fmt: skip


def ci(row: pd.Series, stat: str = "mean") -> str:
    lo, hi = ("ci_low", "ci_high") if stat == "mean" else ("median_ci_low", "median_ci_high")
    return f"{row[stat]:.3f} [{row[lo]:.3f}, {row[hi]:.3f}]"


def table(summary: pd.DataFrame) -> None:
    s = summary.set_index(["target_class", "mode", "metric"])
    head = ["class", "mode", "n", "Dice median", "Dice mean", "region sens.", "region spec.",
            "abs. burden error", "floods"]  # fmt: skip
    print("| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
    for (cls, mode), _ in summary.groupby(["target_class", "mode"]):
        r = {m: s.loc[(cls, mode, m)] for m in METRICS}
        print(f"| {cls} | {mode} | {int(r['dice']['n_photos'])} | {ci(r['dice'], 'median')} | "
              f"{ci(r['dice'])} | {ci(r['region_sensitivity'])} | "
              f"{ci(r['region_specificity'])} | {ci(r['burden_abs_error_pct'])} | "
              f"{r['flooded']['mean']:.2f} |")  # fmt: skip


def differences(diffs: pd.DataFrame) -> None:
    print("\n| class | metric | mode - reference | mean difference [95% CI] | p | worse? |")
    print("| --- | --- | --- | --- | --- | --- |")
    for _, r in diffs[diffs["metric"].isin(METRICS)].iterrows():
        label, higher = METRICS[r["metric"]]
        worse = ""
        if higher is not None:
            worse = "WORSE" if (r["ci_high"] < 0 if higher else r["ci_low"] > 0) else ""
        print(f"| {r['target_class']} | {label} | {r['mode']} - {r['reference']} | "
              f"{r['mean_difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}] | "
              f"{r['p_value']:.2g} | {worse} |")  # fmt: skip


def targets(summary: pd.DataFrame) -> None:
    s = summary.set_index(["target_class", "mode", "metric"])
    print("\ntargets (every mode):")
    for cls, metric, stat, bound, higher in TARGETS:
        for mode in sorted(summary["mode"].unique()):
            v = float(s.loc[(cls, mode, metric)][stat])
            ok = v >= bound if higher else v <= bound
            sign = ">=" if higher else "<="
            print(f"  {cls} {mode:>6} {stat} {metric} {v:.3f} (target {sign} {bound}): "
                  f"{'met' if ok else 'NOT met'}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    run = ap.parse_args().run_dir / "scan"
    summary = pd.read_csv(run / "summary.csv")
    table(summary)
    if (run / "mode_differences.csv").is_file():
        differences(pd.read_csv(run / "mode_differences.csv"))
    targets(summary)


if __name__ == "__main__":
    main()
