"""Wall time and peak memory of whole-photo scanning: exact (stride 10) against dense.

Scans synthetic skin photos of 2352x2352 and 4000x3000 px at scale 1 with a seeded random
ResNet-50 cut after layer2 and a random 3-class logistic head (timing does not depend on what
the head learned), windows of 50 px on the same stride-10 grid in both modes, so both give maps
at the same output resolution. Every (photo, mode) runs in a fresh process, whose peak resident
memory is reported (``ru_maxrss``); wall time covers skin mask, windows, features, classifier
and map.

    python benchmarks/bench_scan.py [--sizes 2352x2352 4000x3000] [--arch resnet50]
        [--layer layer2] [--stride 10] [--device cpu] [--exact-windows N]
        [--photo PATH] [--modes dense exact cells] [--size 50]

``--exact-windows N`` times exact mode on N random windows only and extrapolates to all of
them (the output says so); the default times every window. ``--photo PATH`` scans a real photo
(EXIF orientation applied) resized to each of ``--sizes`` instead of a synthetic one, e.g. the
largest PAD-UFES-20 photo brought to 20 megapixels for peak memory:

    python benchmarks/bench_scan.py --photo PAT_1278_965_701.jpg --modes dense \
        --sizes 2352x2352 5472x3648
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
from typing import Any

import numpy as np


def synthetic_photo(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Skin-coloured photo with lesion-like blotches, built at 1/8 size and upsampled."""
    from skintl.data.synthetic import make_image
    from skintl.scan.image import resize

    rng = np.random.default_rng(seed)
    small, _ = make_image(rng, size=512)
    return resize(small, (h, w))


def _bundle(arch: str, layer: str, mode: str, size: int = 50) -> Any:
    """A random bundle whose feature mode scans in ``mode`` (modes follow the bundle; a cell
    head's trunk gives its tap's map by name)."""
    import torch

    from skintl.encoders.backbones import build_backbone, layer_info
    from skintl.encoders.taps import TapMaps
    from skintl.features.dense import truncated_backbone
    from skintl.scan.bundle import Bundle
    from skintl.scan.head import Head
    from skintl.scan.windows import FEATURE_MODE

    torch.manual_seed(0)
    info = layer_info(arch)[layer]
    rng = np.random.default_rng(0)
    head = Head(np.zeros(info.channels), np.ones(info.channels),
                [rng.normal(0, 0.05, (3, info.channels))], [np.zeros(3)],
                ["AK", "healthy", "SK"])  # fmt: skip
    meta = {"layer": layer, "patch_size": size, "layer_stride": info.stride,
            "feature_mode": FEATURE_MODE[mode], "input_size": None,
            "photo_short_side": None}  # fmt: skip
    net = build_backbone(arch)
    trunk = TapMaps(net, [layer]) if mode == "cells" else truncated_backbone(net, layer)
    return Bundle(meta, trunk.eval(), head)


def load_photo(shape: tuple[int, int], path: str | None) -> np.ndarray:
    """(H, W, 3) uint8: the real photo at ``path`` resized to ``shape``, else a synthetic one."""
    if path is None:
        return synthetic_photo(*shape)
    from pathlib import Path

    from skintl.scan.image import read_photo, resize

    return resize(read_photo(Path(path), max_pixels=None), shape)


def _one(args: dict[str, Any], queue: Any) -> None:
    import torch

    from skintl.scan.run import ScanOptions, probability_map
    from skintl.scan.scanner import window_probabilities
    from skintl.scan.skin import skin_mask
    from skintl.scan.windows import grid_windows

    torch.set_num_threads(args["threads"])
    bundle = _bundle(args["arch"], args["layer"], args["mode"], args["size"])
    size = args["size"]
    photo = load_photo(args["shape"], args["photo"])
    opts = ScanOptions(mode=args["mode"], stride=args["stride"], device=args["device"])
    t0 = time.perf_counter()
    n_win = None
    if args["mode"] == "exact" and args["exact_windows"]:
        skin = skin_mask(photo, size)
        win = grid_windows(skin, size, args["stride"], bundle.stride)
        n_win = len(win)
        pick = np.random.default_rng(0).choice(n_win, min(n_win, args["exact_windows"]), False)
        win.ys, win.xs = win.ys[pick], win.xs[pick]
        p = win.pad
        padded = np.pad(photo, ((p, p), (p, p), (0, 0)), mode="reflect")
        window_probabilities(bundle, padded, win, "exact", args["device"])
        wall = (time.perf_counter() - t0) * n_win / len(pick)
    else:
        probability_map(bundle, photo, opts)
        wall = time.perf_counter() - t0
        n_win = len(grid_windows(skin_mask(photo, size), size, args["stride"], bundle.stride))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    queue.put({"wall_s": wall, "peak_mb": peak, "windows": n_win})


def run(args: dict[str, Any], target: Any = None) -> dict[str, Any]:
    """``target(args, queue)`` (default: one scan) in a fresh process, so its peak memory is its
    own; returns what it put on the queue."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=target or _one, args=(args, q))
    p.start()
    out = q.get()
    p.join()
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["2352x2352", "4000x3000"])
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--layer", default="layer2")
    ap.add_argument("--stride", type=int, default=10)
    ap.add_argument("--size", type=int, default=50, help="window (patch) size in px")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--exact-windows", type=int, default=0)
    ap.add_argument("--photo", help="real photo to resize to each size (default: synthetic)")
    ap.add_argument(
        "--modes", nargs="+", choices=["dense", "exact", "cells"], default=["dense", "exact"]
    )
    a = ap.parse_args()
    source = a.photo or "synthetic photos"
    print(f"{a.arch} {a.layer}, {a.size} px windows, stride {a.stride}, device {a.device}, "
          f"{a.threads} threads, {source}")  # fmt: skip
    print(f"{'photo':>10} {'mode':>6} {'windows':>8} {'wall s':>9} {'peak MB':>8}")
    for size in a.sizes:
        w, h = (int(v) for v in size.split("x"))
        res = {}
        for mode in a.modes:
            args = {"shape": (h, w), "mode": mode, "arch": a.arch, "layer": a.layer,
                    "stride": a.stride, "device": a.device, "threads": a.threads,
                    "exact_windows": a.exact_windows, "photo": a.photo,
                    "size": a.size}  # fmt: skip
            res[mode] = r = run(args)
            note = " (extrapolated)" if mode == "exact" and a.exact_windows else ""
            print(f"{size:>10} {mode:>6} {r['windows']:>8} {r['wall_s']:>9.1f} "
                  f"{r['peak_mb']:>8.0f}{note}", flush=True)  # fmt: skip
        if not {"dense", "exact"} <= set(res):
            continue
        ratio = res["exact"]["wall_s"] / res["dense"]["wall_s"]
        print(f"{size:>10} dense is {ratio:.1f}x faster than exact (target >= 15x)", flush=True)


if __name__ == "__main__":
    main()
