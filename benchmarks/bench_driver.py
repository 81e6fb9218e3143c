"""Driver memory of `evaluate` as the manifest grows (nothing here is a test).

1. ``--dry-run`` (read, validate, group; no Ray) on synthetic sweep-like manifests of 100k and 1M rows, CSV and
   Parquet, 10 images per group; each in a fresh ``prfeval evaluate`` process, peak RSS from ``RUSAGE_CHILDREN``;
2. the manifest alone (read_manifest and the plan, without the model check that imports torch), the same way;
3. a real run of 10k against a larger manifest of tiny groups (32x32 images shared by all rows).

    python benchmarks/bench_driver.py [--rows 100000 1000000] [--real-rows 10000 50000] [--skip-real]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODECS = [("jpeg", "3.0.2"), ("webp", "1.4.0"), ("avif", "1.1.1"), ("jxl", "0.11.0"), ("jp2", "2.5.2")]


def sweep_manifest(path: str, rows: int, per_group: int = 10) -> str:
    """A manifest as `prfeval sweep` writes it (sizes, rates), ``per_group`` images per reference."""
    n = np.arange(rows)
    g, k = n // per_group, n % per_group
    codec = np.array([c for c, _ in CODECS])[k % len(CODECS)]
    version = np.array([v for _, v in CODECS])[k % len(CODECS)]
    ref = np.char.add("photo-", np.char.zfill(g.astype(str), 7))
    dist = np.char.add(
        np.char.add(ref, "-"), np.char.add(codec, np.char.add("-q", (30 + 20 * (k // 5)).astype(str)))
    )
    table = pa.table({
        "ref_id": ref, "ref_uri": np.char.add(np.char.add("refs/", ref), ".png"), "dist_id": dist,
        "dist_uri": np.char.add(np.char.add("dist/", dist), ".png"), "codec": codec, "codec_version": version,
        "setting": np.char.add("q=", (30 + 20 * (k // 5)).astype(str)), "bytes": 20000 + 997 * k + g % 1000,
        "width": np.full(rows, 768, np.int32), "height": np.full(rows, 512, np.int32),
    })  # fmt: skip
    if path.endswith(".parquet"):
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)
    return path


PEAK = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "sys.stdout.write(done.stdout); sys.stderr.write(done.stderr)\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\nsys.exit(done.returncode)\n"
)


def child_peak(cmd: list[str]) -> tuple[float, float, str]:
    """Peak RSS (MiB) and wall seconds of ``cmd`` in a fresh process (measured by a fresh parent of its own, as
    ``RUSAGE_CHILDREN`` keeps the largest child), and its output."""
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *cmd], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - t
    if done.returncode not in (0, 1):
        raise SystemExit(f"{cmd} failed: {done.stderr[-2000:]}")
    out, peak = done.stdout.rstrip().rsplit("\n", 1)
    return int(peak) / 1024, seconds, out


MANIFEST_ALONE = (
    "import sys\nfrom pipeline.scoring import grouping, manifest\n"
    "p = grouping.plan(manifest.read_manifest(sys.argv[1]), patch=128)\nprint(p.groups, p.images, p.pairs)\n"
)


def real_run(rows: int) -> None:
    """One real run in this process: the driver's own peak RSS."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import pipeline_run, tiny_manifest

    from pipeline.runs.ray_runtime import ensure_ray

    ensure_ray(num_cpus=os.cpu_count())
    tmp = tempfile.mkdtemp(prefix="prfeval-driver-")
    try:
        uri = tiny_manifest(os.path.join(tmp, "in"), rows // 10)
        summary, t = pipeline_run(uri, os.path.join(tmp, "out"), "prfnet-tiny", 1)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{rows:8,d} rows: {summary.pairs:,} pairs in {t:.0f} s; driver peak {peak:7.1f} MiB")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--real-rows", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--skip-real", action="store_true")
    ap.add_argument("--real-run", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.real_run:
        return real_run(args.real_run)
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; pyarrow {pa.__version__}")
    tmp = tempfile.mkdtemp(prefix="prfeval-driver-")
    exe = [sys.executable, "-m", "jobs.cli", "evaluate"]
    try:
        for fmt in ("csv", "parquet"):
            peaks = {}
            for rows in sorted(args.rows):
                uri = sweep_manifest(os.path.join(tmp, f"m{rows}.{fmt}"), rows)
                size = os.path.getsize(uri) / 2**20
                dry, t, out = child_peak(
                    [*exe, "--manifest", uri, "--output", os.path.join(tmp, "o"), "--dry-run"]
                )
                alone, t2, _ = child_peak([sys.executable, "-c", MANIFEST_ALONE, uri])
                peaks[rows] = (dry, alone)
                print(f"{fmt:7s} {rows:9,d} rows ({size:6.1f} MiB): --dry-run peak {dry:7.1f} MiB ({t:5.1f} s); "
                      f"manifest alone {alone:7.1f} MiB ({t2:5.1f} s)")  # fmt: skip
                os.remove(uri)
            lo, hi = min(peaks), max(peaks)
            per_row = (peaks[hi][1] - peaks[lo][1]) * 2**20 / (hi - lo)
            print(
                f"{fmt:7s} ratio {hi:,} / {lo:,} rows: --dry-run {peaks[hi][0] / peaks[lo][0]:.2f}x; "
                f"manifest alone {peaks[hi][1] / peaks[lo][1]:.2f}x ({per_row:.0f} bytes per extra row)"
            )
        if args.skip_real:
            return
        real = {}
        for rows in sorted(args.real_rows):
            peak, t, out = child_peak([sys.executable, __file__, "--real-run", str(rows)])
            real[rows] = peak
            print(out.strip())
        lo, hi = min(real), max(real)
        print(f"real run ratio {hi:,} / {lo:,} rows: {real[hi] / real[lo]:.2f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
