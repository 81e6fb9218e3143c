"""Cost of each full-reference metric in milliseconds per megapixel, side by side.

    python benchmarks/bench_metrics.py [--side 512] [--repeat 3]

One scikit-image photo (astronaut, cropped or tiled to ``--side``) against its JPEG q=40 round trip; each metric
is timed with the reference's cached statistics built once (as the load stage does for a reference group), best of
``--repeat``. Metrics that cannot run here are listed with the reason.
"""

from __future__ import annotations

import argparse
import io
import time

import numpy as np
from PIL import Image
from skimage import data

from pipeline.image import metrics


def _pair(side: int) -> tuple[np.ndarray, np.ndarray]:
    photo = data.astronaut()
    reps = -(-side // photo.shape[0])
    ref = np.ascontiguousarray(np.tile(photo, (reps, reps, 1))[:side, :side])
    buf = io.BytesIO()
    Image.fromarray(ref).save(buf, format="JPEG", quality=40)
    return ref, np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=512)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    ref, dist = _pair(args.side)
    mp = ref.shape[0] * ref.shape[1] / 1e6
    print(f"{args.side}x{args.side} ({mp:.3f} MP), best of {args.repeat}")
    print(f"{'metric':<20}{'ms/MP':>10}{'value':>14}")
    for info in metrics.available_metrics():
        why = info.why_unavailable()
        if why:
            print(f"{info.name:<20}{'-':>10}  unavailable: {why}")
            continue
        stats = metrics.ReferenceStats(ref)
        info.measure(stats, dist)  # warm the reference's cache and imports
        best = float("inf")
        for _ in range(args.repeat):
            stats.cache.pop("butteraugli_last", None)  # time the program run, not the cached result
            t = time.perf_counter()
            value = info.measure(stats, dist)
            best = min(best, time.perf_counter() - t)
        shown = "null" if value is None else f"{value:.4f}"
        print(f"{info.name:<20}{1000 * best / mp:>10.0f}{shown:>14}")


if __name__ == "__main__":
    main()
