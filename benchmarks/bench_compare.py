"""Wall time and peak memory of `skintl compare` on two 12-megapixel photos on the CPU.

The two photos of a PAD-UFES-20 repeat pair (default PAT_69_1053, which registers) are upscaled
to ``--size`` (default 4000x3000, 12 MP) and written as JPEG; then, in a fresh process,
:func:`skintl.scan.visits.compare_visits` registers the second onto the first, scans both and
writes every output (scans, side-by-side, change map, CSV / JSON). Reported: the wall time of
each phase, the total, and the process's peak resident memory (``ru_maxrss``).

``--bundle FILE`` scans with a real bundle (at its own training scale, e.g. a 300 px short side
for PAD-UFES-20's); by default a seeded random ResNet-50 cut after layer2 with a random 3-class
head (as ``bench_scan.py``) scans in dense mode at scale 1: every one of the 12 megapixels, the
worst case.

    python benchmarks/bench_compare.py [--size 4000x3000] [--bundle FILE] [--threads 2]
        [--before PHOTO --after PHOTO]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PAD = Path(__file__).resolve().parents[2] / "shared" / "data" / "pad-ufes-20-masked" / "images"


def _one(args: dict[str, Any], queue: Any) -> None:
    import torch

    from skintl.scan import visits as v
    from skintl.scan.bundle import load_bundle
    from skintl.scan.run import ScanOptions

    torch.set_num_threads(args["threads"])
    if args["bundle"]:
        bundle, opts = load_bundle(args["bundle"]), ScanOptions(device="cpu")
    else:
        sys.path.insert(0, str(Path(__file__).parent))
        from bench_scan import _bundle

        bundle, opts = _bundle("resnet50", "layer2", "dense"), ScanOptions(mode="dense", scale=1)
    times: dict[str, float] = {}
    for name in ("register_series", "scan_maps", "compare_pair", "write_scan"):
        fn = getattr(v, name)

        def timed(*a: Any, _fn: Any = fn, _name: str = name, **k: Any) -> Any:
            t = time.perf_counter()
            out = _fn(*a, **k)
            times[_name] = times.get(_name, 0.0) + time.perf_counter() - t
            return out

        setattr(v, name, timed)
    photos = [v.Visit(Path(p)) for p in args["photos"]]
    t0 = time.perf_counter()
    table = v.compare_visits(bundle, photos, Path(args["out"]), opts)
    times["total"] = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({**times, "peak_mb": peak, **table.iloc[0][["registration", "inliers"]].to_dict()})


def make_photos(before: Path, after: Path, shape: tuple[int, int], out: Path) -> list[str]:
    from PIL import Image

    from skintl.scan.image import read_photo, resize

    paths = []
    for i, p in enumerate((before, after)):
        path = out / f"visit{i + 1}.jpg"
        Image.fromarray(resize(read_photo(p), shape)).save(path, quality=95)
        paths.append(str(path))
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="4000x3000")
    ap.add_argument("--before", default=str(PAD / "PAT_69_1053_332.jpg"))
    ap.add_argument("--after", default=str(PAD / "PAT_69_1053_540.jpg"))
    ap.add_argument("--bundle", help="a real bundle (default: random ResNet-50 layer2, dense)")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_scan import run

    w, h = (int(x) for x in a.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(a.before), Path(a.after), (h, w), Path(tmp))
        args = {"photos": photos, "out": str(Path(tmp) / "out"), "bundle": a.bundle,
                "threads": a.threads}  # fmt: skip
        r = run(args, _one)
    what = a.bundle or "random ResNet-50 layer2, dense, scale 1"
    print(f"compare of two {w}x{h} photos ({w * h / 1e6:.1f} MP), {what}, {a.threads} threads:")
    print(f"  registration {r['register_series']:.1f} s ({r['registration']}, {r['inliers']} "
          f"inliers), scans {r['scan_maps']:.1f} s, comparison + pictures "
          f"{r['compare_pair']:.1f} s, scan files {r['write_scan']:.1f} s")  # fmt: skip
    print(f"  total {r['total']:.1f} s, peak memory {r['peak_mb']:.0f} MB")


if __name__ == "__main__":
    main()
