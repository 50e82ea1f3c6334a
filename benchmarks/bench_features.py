"""Feature-extraction throughput: skintl's one-pass extractor vs a naive baseline.

ResNet-50 (random init), 50x50 patches, batch 256, all four layers. The naive baseline runs one
separate fp32 eager forward pass per layer (each truncated at that layer, NCHW), as a script
using torchvision's model per layer would. Both run in this process, on the same patches; the
script prints patches/s, the ratio, the features' relative error against the baseline, and the
GFLOP/s achieved next to a large fp32 matmul measured in the same run.

    python benchmarks/bench_features.py [--n 1024] [--arch resnet50] [--size 50] [--device cpu]

With ``--device cuda`` both run on the GPU in full fp32 (TF32 off, as skintl extracts), and the
reference peak is a large fp32 matmul on the GPU.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from skintl.device import exact_fp32, resolve_device
from skintl.encoders.backbones import build_backbone
from skintl.features.extract import LayerTaps, extract_features, preprocess

LAYERS = ["layer1", "layer2", "layer3", "layer4"]


def naive(
    net: torch.nn.Module, patches: np.ndarray, batch: int, device: torch.device
) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {layer: [] for layer in LAYERS}
    net = net.to(device)  # NCHW parameters
    with torch.inference_mode(), exact_fp32(device):
        for layer in LAYERS:
            taps = LayerTaps(net, [layer])
            for s in range(0, len(patches), batch):
                x = preprocess(patches[s : s + batch], device=device).contiguous()  # plain NCHW
                out[layer].append(taps(x)[layer].cpu().numpy())
    net.to("cpu")
    return {k: np.concatenate(v) for k, v in out.items()}


def timed(fn: Callable[[], dict[str, np.ndarray]], repeats: int) -> tuple[float, dict]:
    best, result = float("inf"), {}
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def matmul_gflops(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    if device.type == "cuda":
        n, repeats = 8192, 20
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    with exact_fp32(device):
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(repeats):
            a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - t) / 1e9


def pass_flops(net: torch.nn.Module, size: int) -> float:
    x = preprocess(np.zeros((1, size, size, 3), np.uint8))
    with FlopCounterMode(display=False) as fc, torch.inference_mode():
        LayerTaps(net, LAYERS)(x)
    return float(fc.get_total_flops())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="patches (default 1024)")
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=50)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    net = build_backbone(args.arch).eval()
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, (args.n, args.size, args.size, 3), dtype=np.uint8)

    def fast() -> dict[str, np.ndarray]:
        return extract_features(
            net, patches, LAYERS, args.batch, progress=False, device=str(device)
        )

    extract_features(  # warm-up
        net, patches[: args.batch], LAYERS, args.batch, progress=False, device=str(device)
    )
    naive(net, patches[: args.batch], args.batch, device)
    t_naive, ref = timed(lambda: naive(net, patches, args.batch, device), args.repeats)
    t_fast, got = timed(fast, args.repeats)
    gflop = pass_flops(net, args.size) * args.n / 1e9
    peak = matmul_gflops(device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} threads"
    )
    print(
        f"{args.arch}, {args.n} patches {args.size}x{args.size}, batch {args.batch}, "
        f"{where}, torch {torch.__version__}, fp32"
    )
    print(f"{'method':<42}{'patches/s':>10}{'GFLOP/s':>10}")
    print(f"{'naive: one fp32 eager pass per layer':<42}{args.n / t_naive:>10.1f}{'':>10}")
    print(f"{'skintl: one pass, channels_last':<42}{args.n / t_fast:>10.1f}{gflop / t_fast:>10.1f}")
    side = 8192 if device.type == "cuda" else 2048
    print(f"{f'fp32 matmul {side}x{side} (reference peak)':<42}{'':>10}{peak:>10.1f}")
    print(
        f"speed-up over naive: {t_naive / t_fast:.2f}x; "
        f"share of matmul peak: {gflop / t_fast / peak:.0%}"
    )
    for layer in LAYERS:
        err = np.linalg.norm(got[layer] - ref[layer]) / np.linalg.norm(ref[layer])
        print(f"  {layer}: relative error vs naive {err:.2e}")


if __name__ == "__main__":
    main()
