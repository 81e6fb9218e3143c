"""Results folder layout: `prfeval query` and `prfeval report` over per-group files, compacted files and one file
per table, and the S3 requests of a small run (nothing here is a test).

1. synthetic results folders of ``--groups`` reference groups (5 images and 10 pairs each, one error row in every
   tenth group), written three ways with the same rows: the per-group layout of older outputs
   (``<table>/<key>.parquet``), parts compacted as a finished run leaves them (``results.write_group`` then
   ``results.compact``), and one hand-written file per table;
2. the latency of ``query --example top-codecs``, of the report's reads (the three tables as pandas) and of
   ``report --n-boot N`` over each, in process, median of 3 after a warm-up, the layouts taken in turn;
3. on a moto S3 server on 127.0.0.1: the files and S3 requests of a run of ``--s3-groups`` groups (the write
   tasks' parts, the compaction, then one query), counted by a wrapper around s3fs's request call.

    python benchmarks/bench_results.py [--groups 2000 20000] [--n-boot 100] [--s3-groups 200]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter

import numpy as np
import pyarrow as pa

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks._common import machine  # noqa: E402
from pipeline.io import schemas, storage  # noqa: E402
from pipeline.io.records import group_key  # noqa: E402
from pipeline.io.tables import write_parquet  # noqa: E402
from pipeline.scoring import compaction, results  # noqa: E402

CODECS = ["jpeg", "webp", "avif", "jxl", "jp2"]


def group(g: int, rng: np.random.Generator) -> tuple[str, dict[str, pa.Table]]:
    ref = f"photo-{g:06d}"
    images = []
    for codec in CODECS:
        bpp = float(0.2 + rng.random() * 1.5)
        images.append({"run_id": "run-bench", "ref_id": ref, "dist_id": f"{ref}-{codec}", "ref_uri": f"refs/{ref}.png",
                       "dist_uri": f"dist/{ref}-{codec}.png", "codec": codec, "codec_version": "1", "setting": "q=50",
                       "bytes": int(bpp * 256 * 256 / 8), "width": 256, "height": 256, "bpp": bpp,
                       "psnr": float(25 + 10 * bpp + rng.normal()), "psnr_y": float(26 + 10 * bpp),
                       "ms_ssim": float(0.9 + 0.05 * bpp), "prf_score": float(rng.normal()),
                       "prf_win_rate": float(rng.random()), "n_pairs": 4})  # fmt: skip
    pairs = []
    for i in range(len(images)):
        for j in range(i + 1, len(images)):
            a, b = images[i], images[j]
            logit = float(rng.normal())
            pairs.append({"run_id": "run-bench", "ref_id": ref, "a_id": a["dist_id"], "b_id": b["dist_id"],
                          "p_a": 1 / (1 + np.exp(-logit)), "logit": logit, "model": "prfnet-tiny",
                          "checkpoint_sha256": "0" * 64, "n_patches": 16, "a_codec": a["codec"],
                          "b_codec": b["codec"], "a_setting": "q=50", "b_setting": "q=50", "a_bpp": a["bpp"],
                          "b_bpp": b["bpp"], "a_codec_version": "1", "b_codec_version": "1"})  # fmt: skip
    errors = []
    if g % 10 == 0:
        errors.append({"run_id": "run-bench", "stage": "load", "ref_id": ref, "dist_id": f"{ref}-bad",
                       "uri": f"dist/{ref}-bad.png", "error": "corrupt", "message": "truncated"})  # fmt: skip
    return group_key(ref), {
        "images": schemas.conform(images, schemas.IMAGES),
        "pairs": schemas.conform(pairs, schemas.PAIRS),
        "errors": schemas.conform(errors, schemas.ERRORS),
    }


def build(base: str, n: int) -> dict[str, str]:
    """The three folders of ``n`` groups: old per-group layout, compacted, one file per table."""
    rng = np.random.default_rng(0)
    folders = {k: os.path.join(base, f"{k}-{n}") for k in ("per-group", "compacted", "one-file")}
    whole: dict[str, list[pa.Table]] = {t: [] for t in compaction.TABLE_NAMES}
    t0 = time.perf_counter()
    for g in range(n):
        key, tables = group(g, rng)
        results.write_group(folders["compacted"], key, tables)
        for name, table in tables.items():
            if table.num_rows:
                write_parquet(os.path.join(folders["per-group"], name, f"{key}.parquet"), table)
            whole[name].append(table)
    t_parts = time.perf_counter() - t0
    t0 = time.perf_counter()
    results.compact(folders["compacted"], expected_groups=n)
    t_compact = time.perf_counter() - t0
    for name, tables in whole.items():
        write_parquet(os.path.join(folders["one-file"], name, "all.parquet"), pa.concat_tables(tables))
    print(f"  {n} groups: parts written in {t_parts:.1f} s, compacted in {t_compact:.2f} s")
    return folders


def file_count(folder: str) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def query_fn(folder: str, out: str):
    from jobs import query

    def fn():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert (
                query.main(["--results", folder, "--example", "top-codecs", "--format", "csv", "--out", out])
                == 0
            )

    return fn


def report_fn(folder: str, out: str, n_boot: int):
    from jobs import report

    def fn():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert (
                report.main(
                    ["--results", folder, "--output", out, "--anchor", "jpeg", "--n-boot", str(n_boot)]
                )
                == 0
            )

    return fn


def rotated_medians(fns: dict[str, object], repeat: int) -> dict[str, float]:
    """Median wall time per function, calling them in turn ``repeat`` times after one warm-up each, so a change in
    the machine's load during the measurement falls on every layout alike."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn()
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def read_fn(folder: str):
    """What the report reads: the three tables as pandas (``results.read_table``)."""

    def fn():
        for name in compaction.TABLE_NAMES:
            results.read_table(folder, name)

    return fn


def latency(groups: list[int], n_boot: int, repeat: int) -> None:
    base = tempfile.mkdtemp(prefix="bench-results-")
    try:
        print(
            "| groups | layout | files | query s | × one file | report's reads s | × one file | report s | × one file |"
        )
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n in groups:
            folders = build(base, n)
            out = os.path.join(base, "q.csv")
            q = rotated_medians({k: query_fn(f, out) for k, f in folders.items()}, repeat)
            t = rotated_medians({k: read_fn(f) for k, f in folders.items()}, repeat)
            rep = os.path.join(base, "rep")
            r = rotated_medians({k: report_fn(f, rep, n_boot) for k, f in folders.items()}, repeat)
            for kind, folder in folders.items():
                print(f"| {n} | {kind} | {file_count(folder)} | {q[kind]:.2f} | {q[kind] / q['one-file']:.2f} | "
                      f"{t[kind]:.2f} | {t[kind] / t['one-file']:.2f} | {r[kind]:.2f} | {r[kind] / r['one-file']:.2f} |",
                      flush=True)  # fmt: skip
            print(f"  load average after {n} groups: {os.getloadavg()[0]:.1f}", flush=True)
            for folder in folders.values():
                shutil.rmtree(folder)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def counted_s3_requests():
    """Count the S3 API calls s3fs makes (every read, write, list, delete of fsspec and of the pyarrow wrapper)."""
    import s3fs
    from fsspec.asyn import sync_wrapper

    counts: Counter = Counter()
    original, original_sync = s3fs.S3FileSystem._call_s3, s3fs.S3FileSystem.call_s3

    async def counting(self, method, *args, **kwargs):
        counts[method if isinstance(method, str) else getattr(method, "__name__", str(method))] += 1
        return await original(self, method, *args, **kwargs)

    s3fs.S3FileSystem._call_s3 = counting
    s3fs.S3FileSystem.call_s3 = sync_wrapper(counting)  # what file objects' uploads go through
    try:
        yield counts
    finally:
        s3fs.S3FileSystem._call_s3, s3fs.S3FileSystem.call_s3 = original, original_sync


def s3_run(n: int) -> None:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    os.environ.update({"AWS_ENDPOINT_URL": f"http://{host}:{port}", "AWS_ACCESS_KEY_ID": "bench",
                       "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_DEFAULT_REGION": "us-east-1"})  # fmt: skip
    try:
        fs, _ = storage.filesystem("s3://bench/")
        fs.mkdir("bench")
        rng = np.random.default_rng(0)
        groups = [group(g, rng) for g in range(n)]
        print("| layout | phase | files after | S3 requests | by call |")
        print("| --- | --- | ---: | ---: | --- |")
        for layout in ("per-group", "compacted"):
            out = f"s3://bench/{layout}"
            phases = []
            with counted_s3_requests() as c:
                for key, tables in groups:
                    if layout == "compacted":
                        results.write_group(out, key, tables)
                    else:
                        for name, table in tables.items():
                            if table.num_rows:
                                write_parquet(storage.join(out, name, f"{key}.parquet"), table)
            phases.append(("write tasks", c))
            if layout == "compacted":
                with counted_s3_requests() as c:
                    results.compact(out, expected_groups=n)
                phases.append(("compaction", c))
            with counted_s3_requests() as c:
                query_fn(out, os.path.join(tempfile.gettempdir(), "bench-q.csv"))()
            phases.append(("one query", c))
            files = len(fs.find(f"bench/{layout}"))
            for phase, counts in phases:
                by = ", ".join(f"{k} {v}" for k, v in counts.most_common(4))
                print(f"| {layout} | {phase} | {files} | {sum(counts.values())} | {by} |", flush=True)
    finally:
        server.stop()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--groups", type=int, nargs="+", default=[2000, 20000])
    p.add_argument("--n-boot", type=int, default=100)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--s3-groups", type=int, default=200)
    p.add_argument("--skip-latency", action="store_true")
    args = p.parse_args()
    print(machine())
    if not args.skip_latency:
        latency(args.groups, args.n_boot, args.repeat)
    if args.s3_groups:
        s3_run(args.s3_groups)


if __name__ == "__main__":
    main()
