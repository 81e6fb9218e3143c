"""PRFNet speed on this machine, every registered variant measured side by side in one run.

For each variant, at its own patch size:

* ``encode`` throughput in patches/s (a batch of random patches);
* bytes per patch of the two feature caches: the backbone's four maps (what the scorer cached before) and the
  cross subtraction projections of them (``model.project``: what it caches now), float32;
* scoring every pair of one reference group of 8 distorted images (28 pairs) three ways, in pairs/s:
  cached projections (encode and project the 9 images once, ``compare_projected`` every pair: the scorer's path
  now), cached backbone maps (encode once, ``compare`` every pair, projecting the gathered maps per pair: the
  scorer's path before), and naive (one full forward per triplet, 28 forwards; ``--no-naive`` skips it).

Timings use ``torch.inference_mode``, one warm-up run, and the median of ``--repeat`` runs.

    .venv/bin/python benchmarks/bench_model.py [--repeat 3] [--threads N] [--models prfnet-tiny prfnet]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import machine, median_time

from model import create_model, list_models, model_info

GROUP = 8  # distorted images per reference group
MiB = 2**20


def per_patch_bytes(maps: list[torch.Tensor]) -> int:
    """Bytes one patch takes in a cache of these maps, stored as float32."""
    return sum(m[0].numel() * 4 for m in maps)


def bench_variant(name: str, repeat: int, encode_batch: int, pair_batch: int, naive_too: bool) -> dict:
    torch.manual_seed(0)
    model = create_model(name).eval()
    ps = model.meta["patch_size"]
    params = sum(p.numel() for p in model.parameters())
    g = torch.Generator().manual_seed(0)
    patches = torch.rand(encode_batch, 3, ps, ps, generator=g)
    ref = torch.rand(1, 3, ps, ps, generator=g)
    dist = (ref + 0.1 * torch.randn(GROUP, 3, ps, ps, generator=g)).clamp(0, 1)
    pairs = list(itertools.combinations(range(GROUP), 2))
    chunks = [pairs[s : s + pair_batch] for s in range(0, len(pairs), pair_batch)]
    index = [(torch.tensor([i for i, _ in c]), torch.tensor([j for _, j in c])) for c in chunks]

    def encode() -> None:
        model.encode(patches)

    def from_cache(f_ref, f_dist, compare) -> torch.Tensor:
        out = []
        for ia, ib in index:
            f_o = [f.expand(len(ia), *f.shape[1:]) for f in f_ref]
            out.append(compare(f_o, [f[ia] for f in f_dist], [f[ib] for f in f_dist]))
        return torch.cat(out)

    def cached_maps() -> torch.Tensor:  # before: the backbone's maps cached, projected per pair
        return from_cache(model.encode(ref), model.encode(dist), model.compare)

    def cached_projections() -> torch.Tensor:  # now: projections cached, nothing recomputed per pair
        return from_cache(model.encode_projected(ref), model.encode_projected(dist), model.compare_projected)

    def naive() -> torch.Tensor:
        return torch.cat([model(ref, dist[i : i + 1], dist[j : j + 1]) for i, j in pairs])

    with torch.inference_mode():
        maps = model.encode(ref)
        raw_bytes, proj_bytes = per_patch_bytes(maps), per_patch_bytes(model.project(maps))
        t_encode = median_time(encode, repeat)
        t_maps = median_time(cached_maps, repeat)
        t_proj = median_time(cached_projections, repeat)
        t_naive = median_time(naive, repeat) if naive_too else float("nan")
        a, b = cached_projections(), cached_maps()
        rel = ((a - b).abs() / b.abs().clamp_min(1e-12)).max().item()
        max_dp = (torch.sigmoid(a) - torch.sigmoid(b)).abs().max().item()
    return {
        "name": name,
        "patch": ps,
        "params": params,
        "encode_ps": encode_batch / t_encode,
        "raw_mib": raw_bytes / MiB,
        "proj_mib": proj_bytes / MiB,
        "maps_pps": len(pairs) / t_maps,
        "proj_pps": len(pairs) / t_proj,
        "naive_pps": len(pairs) / t_naive,
        "rel": rel,
        "max_dp": max_dp,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (median reported)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--models", nargs="+", default=None, help="variants to measure (default: all)")
    parser.add_argument(
        "--pair-batch", type=int, default=14, help="pairs per compare call in the cached path"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the one-forward-per-triplet path")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.models or list_models()

    print(f"{machine()} (at start)")
    rows = []
    for name in names:
        encode_batch = 32 if model_info(name)["patch_size"] <= 128 else 8
        rows.append(bench_variant(name, args.repeat, encode_batch, args.pair_batch, not args.no_naive))
    print(
        f"group of {GROUP} distorted images per reference = {GROUP * (GROUP - 1) // 2} pairs, "
        f"{args.pair_batch} pairs per compare call; median of {args.repeat} runs after a warm-up; "
        f"load average at end {os.getloadavg()[0]:.2f}"
    )
    header = (
        f"{'model':<12} {'patch':>5} {'params':>11} {'encode patches/s':>17} {'MiB/patch maps':>15} "
        f"{'MiB/patch proj':>15} {'pairs/s maps':>13} {'pairs/s proj':>13} {'proj/maps':>9} "
        f"{'pairs/s naive':>14} {'max rel dlogit':>15} {'max |dp|':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['name']:<12} {r['patch']:>5} {r['params']:>11,} {r['encode_ps']:>17.1f} {r['raw_mib']:>15.3f} "
            f"{r['proj_mib']:>15.3f} {r['maps_pps']:>13.2f} {r['proj_pps']:>13.2f} "
            f"{r['proj_pps'] / r['maps_pps']:>8.2f}x {r['naive_pps']:>14.2f} {r['rel']:>15.1e} {r['max_dp']:>9.1e}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
