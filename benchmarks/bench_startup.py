"""Start-up time of the command line: `--help`, and `skintl check` on a typo and a valid config.

Each command runs as a fresh process (the installed ``skintl`` script beside this Python), 5
times after one warm-up run that fills the OS file cache; the script prints each command's
median and max wall time, and which heavy libraries a plain ``import skintl.cli`` pulls in.
Targets: ``--help`` under 1 s; ``skintl check`` of ``configs/pad-ufes-ack-sek.yaml`` with a
typo in a key under 1.5 s (the config is validated before torch could load). The valid config's
check reads every photo (the real data must be at the config's ``data.root``; skipped
otherwise) and the script prints whether torch was imported before the last photo was read.
``skintl pretrain --help`` and ``skintl weights import --help`` list the registered backbones and
checkpoint formats, which import torch (about 5 s on a 2-core CPU); they are not measured here.

    python benchmarks/bench_startup.py [--runs 5] [--config configs/pad-ufes-ack-sek.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

COMMANDS = [["--help"], ["data", "--help"], ["check", "--help"], ["study", "--help"]]
HEAVY = ("torch", "torchvision", "timm", "lightning", "sklearn", "scipy", "matplotlib", "pandas")
TARGET_S = {"help": 1.0, "typo": 1.5}
REPO = Path(__file__).resolve().parents[1]
#: runs ``skintl check`` in-process and reports whether torch was imported during it
PROBE = """
import sys
from skintl.cli import main
rc = main(["check", sys.argv[1]])
print("torch imported:", "torch" in sys.modules, file=sys.stderr)
"""


def wall_time(argv: list[str], ok: tuple[int, ...] = (0,)) -> float:
    start = time.perf_counter()
    rc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
    if rc not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {rc}")
    return time.perf_counter() - start


def timed(label: str, argv: list[str], runs: int, target: float | None, ok=(0,)) -> None:
    wall_time(argv, ok)  # warm-up: file cache
    times = [wall_time(argv, ok) for _ in range(runs)]
    median = statistics.median(times)
    verdict = "" if target is None else ("ok" if median < target else "SLOW")
    print(f"{label:<44} {median:9.3f} {max(times):7.3f}  {verdict}")


def configs(config: Path, tmp: Path) -> tuple[Path, Path]:
    """The config with paths made absolute, and a copy with a typo in one key."""
    raw = yaml.safe_load(config.read_text())
    root = raw["data"].get("root")
    if root is not None:
        raw["data"]["root"] = str((config.parent / root).resolve())
    valid = tmp / "valid.yaml"
    valid.write_text(yaml.safe_dump(raw, sort_keys=False))
    raw["patches"]["strid"] = raw["patches"].pop("stride", 16)  # the typo
    typo = tmp / "typo.yaml"
    typo.write_text(yaml.safe_dump(raw, sort_keys=False))
    return valid, typo


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "pad-ufes-ack-sek.yaml")
    args = ap.parse_args()
    skintl = Path(sys.executable).with_name("skintl")
    code = "import sys, skintl.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    heavy = [m for m in HEAVY if f"'{m}'" in loaded.stdout]
    print(f"heavy modules imported by skintl.cli: {heavy or 'none'}")
    print(f"{'command':<44} {'median s':>9} {'max s':>7}  target")
    for cmd in COMMANDS:
        timed("skintl " + " ".join(cmd), [str(skintl), *cmd], args.runs, TARGET_S["help"])
    with tempfile.TemporaryDirectory() as tmp:
        valid, typo = configs(args.config, Path(tmp))
        name = args.config.name
        timed(f"skintl check {name} (typo)", [str(skintl), "check", str(typo)], args.runs,
              TARGET_S["typo"], ok=(2,))  # fmt: skip
        root = yaml.safe_load(valid.read_text())["data"].get("root")
        if root is not None and not Path(root).is_dir():
            print(f"skintl check {name} (valid): skipped, no data at {root}")
            return
        timed(f"skintl check {name} (valid)", [str(skintl), "check", str(valid)],
              max(1, args.runs // 2), None)  # fmt: skip
        probe = subprocess.run([sys.executable, "-c", PROBE, str(valid)], capture_output=True,
                               text=True, check=True)  # fmt: skip
        photos = [x for x in probe.stdout.splitlines() if x.startswith("data OK")]
        torch = [x for x in probe.stderr.splitlines() if x.startswith("torch imported")]
        print(f"  {photos[0] if photos else probe.stdout.strip()}; {torch[0]}")


if __name__ == "__main__":
    main()
