"""Sweep throughput: encodes/s per codec on this CPU, and the Ray Data job against a plain loop.

    .venv/bin/python benchmarks/bench_sweep.py [--max-side 512] [--samples astronaut,coffee,...] [--repeat 3]

1. Per codec: encode (and decode) each sample photo at every setting of the spec in one process, one thread, and
   report encodes/s, megapixels/s and the median encode time. This is what one CPU core sustains.
2. The same sweep (every photo x every setting, with PNG writes and the per-reference part files) as a plain loop
   in one process (``executor="local"``) and as the Ray Data job (``executor="ray"``, local Ray on all CPUs);
   the Ray job is timed cold (its first run, Ray started inside the timing) and warm (Ray running, workers up),
   loop and warm Ray runs alternating, medians reported. Each run writes to a fresh folder: nothing is reused.
   Ray starts its workers at niceness 15 by default; here they run at 0 like the loop (``RAY_worker_niceness``),
   so a busy machine does not tilt the comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

from pipeline.codecs import get_codec, parse_spec
from pipeline.image import samples
from pipeline.sweep import run_sweep

SPEC = "jpeg:q=30,60,90 webp:q=30,60,90 avif:q=30,60,90 jp2:ratio=50,20,8 jxl:d=3,1.5,0.8"


def bench_codecs(names: list[str], max_side: int, spec: str, repeat: int) -> None:
    photos = [samples.load_sample(n, max_side) for n in names]
    megapixels = sum(p.shape[0] * p.shape[1] for p in photos) / 1e6
    settings = parse_spec(spec)
    print(
        f"## per codec, one process, one thread: {len(photos)} photos ({megapixels:.2f} MP), max side {max_side}"
    )
    print(f"{'codec':<6} {'version':<22} {'encodes/s':>10} {'MP/s':>8} {'median ms':>10} {'decodes/s':>10}")
    for codec_name in dict.fromkeys(s.codec for s in settings):
        codec = get_codec(codec_name)
        values = [s.value for s in settings if s.codec == codec_name]
        codec.encode(photos[0], values[0])  # warm up (library initialisation)
        enc_times, dec_times = [], []
        for _ in range(repeat):
            for rgb in photos:
                for v in values:
                    t0 = time.perf_counter()
                    data = codec.encode(rgb, v)
                    t1 = time.perf_counter()
                    codec.decode(data)
                    enc_times.append(t1 - t0)
                    dec_times.append(time.perf_counter() - t1)
        n = len(enc_times)
        mp = megapixels * len(values) * repeat
        print(
            f"{codec_name:<6} {codec.version():<22} {n / sum(enc_times):>10.1f} {mp / sum(enc_times):>8.2f} "
            f"{statistics.median(enc_times) * 1000:>10.1f} {n / sum(dec_times):>10.1f}"
        )


def _timed_sweep(refs: str, spec: str, executor: str) -> tuple[float, int]:
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as out:
        t0 = time.perf_counter()
        summary = run_sweep(refs, spec, out, executor=executor, progress=False)
        seconds = time.perf_counter() - t0
    assert summary.n_errors == 0 and summary.n_reused == 0
    return seconds, summary.n_encoded


def bench_executors(names: list[str], max_side: int, spec: str, rounds: int) -> None:
    import ray

    refs = samples.sample_uri(",".join(names), max_side)
    print(
        f"\n## the whole sweep: {len(names)} photos x {len(parse_spec(spec))} settings, max side {max_side}"
    )
    t0 = time.perf_counter()
    _, n = _timed_sweep(refs, spec, "ray")  # the first job starts Ray and its workers
    cold_s = time.perf_counter() - t0
    loop, warm = [], []
    for _ in range(rounds):  # alternate, so a change in machine load hits both alike
        loop.append(_timed_sweep(refs, spec, "local")[0])
        warm.append(_timed_sweep(refs, spec, "ray")[0])
    cpus = int(ray.cluster_resources().get("CPU", 0))
    ray.shutdown()
    loop_s, warm_s = statistics.median(loop), statistics.median(warm)
    print(f"{n} encodes per run; medians of {rounds} alternating rounds")
    print(f"{'run':<34} {'seconds':>8} {'encodes/s':>10} {'vs loop':>8}")
    print(f"{'plain loop, one process':<34} {loop_s:>8.2f} {n / loop_s:>10.1f} {1.0:>8.2f}")
    print(
        f"{f'Ray Data job, {cpus} CPUs, warm':<34} {warm_s:>8.2f} {n / warm_s:>10.1f} {loop_s / warm_s:>8.2f}"
    )
    print(
        f"{f'Ray Data job, {cpus} CPUs, cold start':<34} {cold_s:>8.2f} {n / cold_s:>10.1f} {loop_s / cold_s:>8.2f}"
    )
    print("(vs loop = loop seconds / run seconds: above 1 the Ray job is faster)")


def main() -> None:
    os.environ.setdefault("RAY_worker_niceness", "0")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--samples", default="astronaut,chelsea,coffee,rocket,motorcycle,immunohistochemistry"
    )
    parser.add_argument("--max-side", type=int, default=512)
    parser.add_argument("--spec", default=SPEC)
    parser.add_argument("--repeat", type=int, default=2, help="passes over the photos per codec")
    parser.add_argument("--rounds", type=int, default=3, help="alternating loop / Ray rounds")
    args = parser.parse_args()
    names = args.samples.split(",")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"# sweep benchmark: {os.cpu_count()} CPUs, load average {load:.1f} at start")
    bench_codecs(names, args.max_side, args.spec, args.repeat)
    bench_executors(names, args.max_side, args.spec, args.rounds)


if __name__ == "__main__":
    main()
