"""Helpers the benchmarks share: machine facts, a timing loop, benchmark manifests, and `evaluate`'s two ways of
scoring one manifest (the Ray pipeline and a bare single-process loop doing the same work)."""

from __future__ import annotations

import io
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
from PIL import Image


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    """One line: CPU model and cores, torch version and intra-op threads, load average now."""
    import torch

    return (
        f"cpu: {cpu_model()}, {os.cpu_count()} logical cores; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {os.getloadavg()[0]:.2f}"
    )


def median_time(fn: Callable[[], object], repeat: int) -> float:
    """Median wall time of ``repeat`` calls of ``fn`` after one warm-up call."""
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _jpeg_decoded(rgb: np.ndarray, q: int) -> tuple[bytes, int]:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=q)
    return _png(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))), len(buf.getvalue())


def photo_manifest(folder: str, groups: int, side: int, qualities=(10, 25, 45, 70, 90)) -> str:
    """``groups`` references cut from the bundled photos, each with JPEG versions at ``qualities``."""
    from pipeline.image.samples import SAMPLES, load_sample

    photos = [load_sample(n) for n in ("astronaut", "coffee", "rocket", "chelsea")]
    del SAMPLES
    rows = []
    os.makedirs(os.path.join(folder, "img"), exist_ok=True)
    for g in range(groups):
        src = photos[g % len(photos)]
        top, left = (g * 37) % (src.shape[0] - side), (g * 53) % (src.shape[1] - side)
        ref = np.ascontiguousarray(src[top : top + side, left : left + side])
        with open(os.path.join(folder, "img", f"r{g}.png"), "wb") as f:
            f.write(_png(ref))
        for q in qualities:
            data, nbytes = _jpeg_decoded(ref, q)
            with open(os.path.join(folder, "img", f"r{g}-q{q}.png"), "wb") as f:
                f.write(data)
            rows.append(
                (
                    f"r{g}",
                    f"img/r{g}.png",
                    f"r{g}-q{q}",
                    f"img/r{g}-q{q}.png",
                    "jpeg",
                    "bench",
                    f"q={q}",
                    nbytes,
                )
            )
    cols = ["ref_id", "ref_uri", "dist_id", "dist_uri", "codec", "codec_version", "setting", "bytes"]
    uri = os.path.join(folder, "manifest.csv")
    pd.DataFrame(rows, columns=cols).to_csv(uri, index=False)
    return uri


def tiny_manifest(folder: str, groups: int, per_group: int = 10) -> str:
    """``groups`` reference groups of ``per_group`` 32x32 distorted images, all reading a few small files."""
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    os.makedirs(folder, exist_ok=True)
    imgs = {"ref": ref}
    for k in range(per_group):
        imgs[f"d{k}"] = np.clip(ref + rng.normal(0, 4 + 3 * k, ref.shape), 0, 255).astype(np.uint8)
    for name, img in imgs.items():
        with open(os.path.join(folder, f"{name}.png"), "wb") as f:
            f.write(_png(img))
    df = pd.DataFrame(
        {
            "ref_id": np.repeat([f"r{g}" for g in range(groups)], per_group),
            "ref_uri": "ref.png",
            "dist_id": [f"r{g}-{k}" for g in range(groups) for k in range(per_group)],
            "dist_uri": [f"d{k}.png" for _ in range(groups) for k in range(per_group)],
            "codec": "x",
            "bytes": 100,
        }
    )
    uri = os.path.join(folder, "manifest.csv")
    df.to_csv(uri, index=False)
    return uri


def bare_loop(
    manifest_uri: str,
    output: str,
    model: str,
    threads: int,
    *,
    device: str = "auto",
    precision: str = "fp32",
    batch_size: int | None = None,
) -> tuple[int, float]:
    """The same work as the pipeline, in one process: load, score from cached features, write."""
    from pipeline.scoring import manifest, results
    from pipeline.scoring.load import load_group
    from pipeline.scoring.scorer import PairScorer

    scorer = PairScorer.load(
        model, threads=threads, device=device, precision=precision, batch_size=batch_size
    )
    start = time.perf_counter()
    n_pairs = 0
    for group in manifest.groups(manifest.read_manifest(manifest_uri)):
        loaded = load_group(group, patch=scorer.patch_size, min_size=scorer.min_size, pairs="all")
        logits = scorer.score(loaded.patches, loaded.pair_list())
        scored = results.ScoredGroup.from_loaded(loaded, logits, model=model,
                                                 checkpoint_sha256=scorer.checkpoint_sha256)  # fmt: skip
        results.write_group(output, loaded.key, results.group_tables(scored, run_id="bare"))
        n_pairs += len(scored.pairs)
    return n_pairs, time.perf_counter() - start


def pipeline_run(
    manifest_uri: str,
    output: str,
    model: str,
    actors: int,
    cpus_per_actor: float | None = None,
    *,
    gpus_per_actor: float = 0.0,
    precision: str = "fp32",
    batch_size: int | None = None,
):
    """``evaluate`` on the running Ray: the summary and the wall-clock seconds."""
    from pipeline.scoring.driver import EvaluateConfig, ScoringConfig, run_evaluate

    scoring = ScoringConfig(output=output, model=model, actors=actors, cpus_per_actor=cpus_per_actor,
                            gpus_per_actor=gpus_per_actor, precision=precision, batch_size=batch_size,
                            progress=False)  # fmt: skip
    cfg = EvaluateConfig(manifest=manifest_uri, scoring=scoring)
    t = time.perf_counter()
    summary = run_evaluate(cfg)
    return summary, time.perf_counter() - t
