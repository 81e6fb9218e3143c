"""PRFNet speed on this machine, every registered variant measured side by side in one run.

For each variant, at its own patch size:

* ``encode`` throughput in patches/s (a batch of random patches);
* scoring every pair of one reference group of 8 distorted images (28 pairs) two ways: cached (encode the 9
  images once, compare all pairs from the cached features) and naive (one full forward per triplet, 28
  forwards). The ratio naive/cached is what caching features buys.

Timings use ``torch.inference_mode``, one warm-up run, and the median of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_model.py [--repeat 3] [--threads N] [--models prfnet-tiny prfnet]
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import create_model, list_models, model_info

GROUP = 8  # distorted images per reference group


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown"


def median_time(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_variant(name: str, repeat: int, encode_batch: int, pair_batch: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    ps = model.meta["patch_size"]
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    patches = torch.rand(encode_batch, 3, ps, ps, generator=g)
    ref = torch.rand(1, 3, ps, ps, generator=g)
    dist = (ref + 0.1 * torch.randn(GROUP, 3, ps, ps, generator=g)).clamp(0, 1)
    pairs = list(itertools.combinations(range(GROUP), 2))

    def encode() -> None:
        model.encode(patches)

    def cached() -> torch.Tensor:
        f_ref, f_dist = model.encode(ref), model.encode(dist)
        out = []
        for start in range(0, len(pairs), pair_batch):
            chunk = pairs[start : start + pair_batch]
            ia = torch.tensor([i for i, _ in chunk])
            ib = torch.tensor([j for _, j in chunk])
            f_o = [f.expand(len(chunk), *f.shape[1:]) for f in f_ref]
            out.append(model.compare(f_o, [f[ia] for f in f_dist], [f[ib] for f in f_dist]))
        return torch.sigmoid(torch.cat(out))

    def naive() -> torch.Tensor:
        return torch.cat([model(ref, dist[i : i + 1], dist[j : j + 1]) for i, j in pairs])

    with torch.inference_mode():
        t_encode = median_time(encode, repeat)
        t_cached = median_time(cached, repeat)
        t_naive = median_time(naive, repeat)
        max_diff = (cached() - naive()).abs().max().item()
    return {
        "name": name,
        "patch": ps,
        "params": params,
        "encode_ps": encode_batch / t_encode,
        "cached_s": t_cached,
        "naive_s": t_naive,
        "ratio": t_naive / t_cached,
        "max_diff": max_diff,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--models", nargs="+", default=None, help="variants to measure (default: all)")
    parser.add_argument(
        "--pair-batch", type=int, default=14, help="pairs per compare call in the cached path"
    )
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or list_models()

    print(
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average at start {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for name in names:
        encode_batch = 32 if model_info(name)["patch_size"] <= 128 else 8
        rows.append(bench_variant(name, args.repeat, encode_batch, args.pair_batch))
    print(
        f"group of {GROUP} distorted images per reference = {GROUP * (GROUP - 1) // 2} pairs; "
        f"median of {args.repeat} runs after a warm-up; load average at end {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'model':<12} {'patch':>5} {'params':>11} {'encode patches/s':>17} {'cached s':>9} {'naive s':>9} "
        f"{'naive/cached':>12} {'max |dp|':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<12} {r['patch']:>5} {r['params']:>11,} {r['encode_ps']:>17.1f} "
            f"{r['cached_s']:>9.3f} {r['naive_s']:>9.3f} {r['ratio']:>11.1f}x {r['max_diff']:>9.1e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
