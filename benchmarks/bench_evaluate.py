"""Benchmarks of `evaluate`, measured side by side in one run (nothing here is a test).

1. overhead: triplets/s of the Ray pipeline (one actor) versus a bare single-process loop doing the same work
   (same model, same triplets, same cached scoring, same Parquet writes, no Ray);
2. scaling: 1 versus 2 actors;
3. memory: peak RSS of the driver and of a scoring actor for a small and a 10x larger manifest of tiny groups.

    python benchmarks/bench_evaluate.py [--groups 12] [--memory-groups 1000 10000] [--skip-memory]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")

from _common import bare_loop, photo_manifest, pipeline_run, tiny_manifest


def memory_run(n: int, model: str) -> None:
    """One manifest size in a fresh process, so the driver's peak RSS is this size's alone."""
    from pipeline.runs.ray_runtime import ensure_ray

    ensure_ray(num_cpus=os.cpu_count())
    tmp = tempfile.mkdtemp(prefix="prfeval-mem-")
    try:
        uri = tiny_manifest(os.path.join(tmp, "in"), n)
        summary, t = pipeline_run(uri, os.path.join(tmp, "out"), model, 1)
        driver = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{n:6d} groups: {summary.pairs / t:7.1f} triplets/s ({t:.0f} s); driver peak {driver:7.1f} MiB; "
            f"actor peak {summary.actor_peak_rss_mb:7.1f} MiB"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="prfnet-tiny")
    ap.add_argument("--groups", type=int, default=120)
    ap.add_argument("--side", type=int, default=256)
    ap.add_argument("--memory-groups", type=int, nargs=2, default=(1000, 10000))
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    from pipeline.runs.ray_runtime import ensure_ray

    if args.memory_run:
        return memory_run(args.memory_run, args.model)

    ensure_ray(num_cpus=os.cpu_count())
    tmp = tempfile.mkdtemp(prefix="prfeval-bench-")
    try:
        uri = photo_manifest(os.path.join(tmp, "photos"), args.groups, args.side)
        print(f"machine: {os.cpu_count()} CPUs; model {args.model}; {args.groups} groups of 5 JPEG versions "
              f"({args.side}x{args.side}), all pairs")  # fmt: skip
        half = photo_manifest(os.path.join(tmp, "half"), args.groups // 2, args.side)
        # warm-up: start the actor pool machinery once
        pipeline_run(half, os.path.join(tmp, "warm"), args.model, 1)
        bare = {m: bare_loop(m, os.path.join(tmp, f"bare-{k}"), args.model, threads=1)
                for k, m in (("half", half), ("full", uri))}  # fmt: skip
        ray1 = {
            m: pipeline_run(m, os.path.join(tmp, f"r1-{k}"), args.model, 1)
            for k, m in (("half", half), ("full", uri))
        }
        ray2 = {
            m: pipeline_run(m, os.path.join(tmp, f"r2-{k}"), args.model, 2)
            for k, m in (("half", half), ("full", uri))
        }

        def rates(n_half, t_half, n_full, t_full):
            """End-to-end rate of the full run, and the marginal rate of its second half (fixed costs cancel)."""
            return n_full / t_full, (n_full - n_half) / (t_full - t_half)

        b_e2e, b_marg = rates(*bare[half], *bare[uri])
        print(
            "\n== overhead and scaling (triplets/s; marginal = extra triplets / extra seconds between a run of"
        )
        print(
            f"   {args.groups // 2} and one of {args.groups} groups, so start-up and model load cancel out)"
        )
        print(f"bare loop, 1 torch thread   : end to end {b_e2e:6.1f}; marginal {b_marg:6.1f}")
        margs = {}
        for name, runs_ in (("1 actor ", ray1), ("2 actors", ray2)):
            (sh, th), (sf, tf) = runs_[half], runs_[uri]
            assert sf.pairs == bare[uri][0]
            e2e, margs[name] = rates(sh.pairs, th, sf.pairs, tf)
            print(
                f"Ray pipeline, {name}     : end to end {e2e:6.1f} ({e2e / b_e2e:.2f}x bare); "
                f"marginal {margs[name]:6.1f} ({margs[name] / b_marg:.2f}x bare)"
            )
        print(f"2 actors / 1 actor (marginal): {margs['2 actors'] / margs['1 actor ']:.2f}x")
        if args.skip_memory:
            return
        print("\n== memory (peak RSS, MiB): groups of 10 tiny images (45 pairs each), one process per size")
        for n in args.memory_groups:
            subprocess.run(
                [sys.executable, __file__, "--model", args.model, "--memory-run", str(n)], check=True
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
