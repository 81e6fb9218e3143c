"""Encode and decode cost per megapixel of the JPEG encoders and HEIC, side by side with libjpeg-turbo.

    .venv/bin/python benchmarks/bench_codecs.py [--side 512] [--repeats 5]

The six bundled photos scaled to a longer side of ``--side`` px; each codec at three settings and two chroma
subsamplings, every encode and decode timed ``--repeats`` times (wall and CPU, one thread); the table gives the
median milliseconds per megapixel and the mean bpp. Prints the machine facts and a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

from pipeline.codecs import get_codec
from pipeline.image import samples

CODECS = {
    "jpeg": (30, 60, 90),
    "jpegli": (30, 60, 90),
    "mozjpeg": (30, 60, 90),
    "heic": (30, 50, 80),
}
SUBSAMPLINGS = ("420", "444")


def machine() -> str:
    load = os.getloadavg()[0]
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} vCPUs ({cpu}), Python {platform.python_version()}, load average {load:.1f}"


def bench(side: int, repeats: int) -> list[dict]:
    photos = [samples.load_sample(n, max_side=side) for n in samples.SAMPLES]
    rows = []
    for name, values in CODECS.items():
        codec = get_codec(name)
        codec.encode(photos[0], values[1])  # warm up (first-call set-up, shim build)
        for sub in SUBSAMPLINGS:
            enc, enc_cpu, dec, bpp = [], [], [], []
            for rgb in photos:
                mp = rgb.shape[0] * rgb.shape[1] / 1e6
                for v in values:
                    for _ in range(repeats):
                        w0, c0 = time.perf_counter(), time.process_time()
                        data = codec.encode(rgb, v, {"subsampling": sub})
                        enc.append((time.perf_counter() - w0) * 1000 / mp)
                        enc_cpu.append((time.process_time() - c0) * 1000 / mp)
                        w0 = time.perf_counter()
                        codec.decode(data)
                        dec.append((time.perf_counter() - w0) * 1000 / mp)
                    bpp.append(len(data) * 8 / (mp * 1e6))
            rows.append(
                {
                    "codec": name,
                    "version": codec.version(),
                    "subsampling": sub,
                    "values": ",".join(map(str, values)),
                    "encode_ms_per_mp": statistics.median(enc),
                    "encode_cpu_ms_per_mp": statistics.median(enc_cpu),
                    "decode_ms_per_mp": statistics.median(dec),
                    "mean_bpp": statistics.fmean(bpp),
                }
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--side", type=int, default=512)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    print(f"machine at start: {machine()}")
    rows = bench(args.side, args.repeats)
    print(f"machine at end: {machine()}\n")
    turbo = {r["subsampling"]: r["encode_ms_per_mp"] for r in rows if r["codec"] == "jpeg"}
    print("| codec | library version | subsampling | q | encode ms/MP (wall) | encode CPU ms/MP | "
          "× libjpeg-turbo | decode ms/MP | mean bpp |")  # fmt: skip
    print("| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        ratio = r["encode_ms_per_mp"] / turbo[r["subsampling"]]
        print(
            f"| {r['codec']} | {r['version']} | {r['subsampling']} | {r['values']} | {r['encode_ms_per_mp']:.1f} | "
            f"{r['encode_cpu_ms_per_mp']:.1f} | {ratio:.1f} | {r['decode_ms_per_mp']:.1f} | {r['mean_bpp']:.3f} |"
        )


if __name__ == "__main__":
    main()
