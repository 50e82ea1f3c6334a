"""Start-up time of the command line: ``skintl --help`` and ``skintl data --help``.

Each command runs as a fresh process (the installed ``skintl`` script beside this Python), 5
times after one warm-up run that fills the OS file cache; the script prints each command's
median and max wall time, and which heavy libraries a plain ``import skintl.cli`` pulls in.
Target: every median under 1 s (torch, Lightning and scikit-learn are imported only where used).
``skintl pretrain --help`` and ``skintl weights import --help`` list the registered backbones and
checkpoint formats, which import torch (about 5 s on a 2-core CPU); they are not measured here.

    python benchmarks/bench_startup.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = [["--help"], ["data", "--help"], ["check", "--help"], ["study", "--help"]]
HEAVY = ("torch", "torchvision", "lightning", "sklearn", "scipy", "matplotlib", "pandas")
TARGET_S = 1.0


def wall_time(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    skintl = Path(sys.executable).with_name("skintl")
    code = "import sys, skintl.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    heavy = [m for m in HEAVY if f"'{m}'" in loaded.stdout]
    print(f"heavy modules imported by skintl.cli: {heavy or 'none'}")
    print(f"{'command':<24} {'median s':>9} {'max s':>7}  target < {TARGET_S:.0f} s")
    for cmd in COMMANDS:
        argv = [str(skintl), *cmd]
        wall_time(argv)  # warm-up: file cache
        times = [wall_time(argv) for _ in range(args.runs)]
        median = statistics.median(times)
        verdict = "ok" if median < TARGET_S else "SLOW"
        print(f"{'skintl ' + ' '.join(cmd):<24} {median:9.3f} {max(times):7.3f}  {verdict}")


if __name__ == "__main__":
    main()
