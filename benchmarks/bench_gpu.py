"""Scoring on one CUDA GPU, measured in one run of at most ten minutes, printed as one table.

1. encode: patches/s of ``PairScorer.project`` (pinned host-to-device copy, backbone, cross subtraction
   projections) for each precision (fp32, bf16, fp16) and batch size, and at the batch size the scorer chooses
   from free device memory;
2. fits: that chosen batch size per precision, with the free memory and the measured per-patch footprint;
3. pipeline: triplets/s of ``evaluate`` end to end (decode tasks on the CPUs, one scoring actor on the GPU)
   against a bare single-process loop doing the same work on the same GPU (helpers shared with
   ``bench_evaluate.py``, in ``_common.py``).

Each row carries how busy the GPU was while it ran (``torch.cuda.utilization``, which needs NVML through the
``nvidia-ml-py``/``pynvml`` package; ``n/a`` without it). ``--dry-run`` runs the same code paths on the CPU with
``prfnet-tiny`` and tiny sizes in well under a minute (a test runs it, so the script keeps working).

    .venv/bin/python benchmarks/bench_gpu.py [--batches 16 32 64 128 256] [--groups 40] [--budget 600]
    .venv/bin/python benchmarks/bench_gpu.py --dry-run
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TQDM_DISABLE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from _common import bare_loop, machine, photo_manifest, pipeline_run

from pipeline.scoring.scorer import MEMORY_SAFETY, PRECISIONS, PairScorer, build_model

MiB = 2**20
ROWS: list[tuple[str, str, str, str, str]] = []  # section, setting, result, GPU busy, note


def row(section: str, setting: str, result: str, busy: str = "n/a", note: str = "") -> None:
    ROWS.append((section, setting, result, busy, note))


class GpuBusy:
    """Mean GPU utilisation (%) over a block, sampled every 0.1 s in a thread; ``n/a`` when it cannot be read."""

    def __init__(self, device: torch.device):
        self.device = device
        self.available = device.type == "cuda" and _utilisation(device) is not None
        self.samples: list[int] = []
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            u = _utilisation(self.device)
            if u is not None:
                self.samples.append(u)

    def __enter__(self) -> GpuBusy:
        self.samples, self._stop = [], threading.Event()
        if self.available:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.available:
            self._stop.set()
            self._thread.join()

    @property
    def mean(self) -> str:
        return f"{sum(self.samples) / len(self.samples):.0f}%" if self.samples else "n/a"


def _utilisation(device: torch.device) -> int | None:
    try:
        return int(torch.cuda.utilization(device))
    except Exception:  # no NVML (pynvml missing, no driver library) or no CUDA
        return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def precision_supported(precision: str, device: torch.device) -> bool:
    if device.type == "cuda" and precision == "bf16":
        return torch.cuda.is_bf16_supported()
    return True


def encode_rate(scorer: PairScorer, patches: np.ndarray, seconds: float) -> float:
    """Patches/s of ``scorer.project`` over ``patches``: a warm-up, then calls for at least ``seconds``."""
    scorer.project(patches)
    _sync(scorer.device)
    n, t0 = 0, time.perf_counter()
    while n < 2 or time.perf_counter() - t0 < seconds:
        scorer.project(patches)
        n += 1
    _sync(scorer.device)
    return n * len(patches) / (time.perf_counter() - t0)


def bench_encode(model, device, args, deadline: float, busy: GpuBusy) -> None:
    ps = args.patch or model.meta["patch_size"]
    rng = np.random.default_rng(0)
    for precision in args.precisions:
        if not precision_supported(precision, device):
            row("encode", f"{precision}", "unsupported", note="this GPU has no bf16")
            row("fits", f"{precision}", "unsupported")
            continue
        for batch in [*args.batches, None]:
            setting = f"{precision}, batch {batch or 'auto'}"
            if time.perf_counter() > deadline:
                row("encode", setting, "skipped", note="over --budget")
                continue
            try:
                scorer = PairScorer(model, precision=precision, batch_size=batch, device=device)
                patches = rng.integers(0, 256, (scorer.batch_size, 3, ps, ps), dtype=np.uint8)
                with busy:
                    rate = encode_rate(scorer, patches, args.seconds)
            except torch.cuda.OutOfMemoryError:
                row("encode", setting, "out of memory")
                torch.cuda.empty_cache()
                continue
            except RuntimeError as e:  # e.g. a precision the CPU's autocast does not run
                row("encode", setting, "failed", note=str(e).splitlines()[0][:60])
                continue
            if batch is None:
                setting = f"{precision}, batch auto ({scorer.batch_size})"
            row("encode", setting, f"{rate:,.1f} patches/s", busy.mean)
            if batch is None:
                bench_fits(scorer, precision)
            del scorer, patches
            if device.type == "cuda":
                torch.cuda.empty_cache()


def bench_fits(scorer: PairScorer, precision: str) -> None:
    """The chosen batch size and where it came from."""
    if scorer.device.type != "cuda":
        row("fits", precision, f"{scorer.batch_size} patches", note="CPU: the default batch size")
        return
    per_patch, free = scorer.patch_bytes(), scorer.free_bytes()
    note = f"{free / MiB:,.0f} MiB free, {per_patch / MiB:.1f} MiB/patch, safety {MEMORY_SAFETY}"
    row("fits", precision, f"{scorer.batch_size} patches", note=note)


def bench_pipeline(device, args, deadline: float, busy: GpuBusy) -> None:
    from pipeline.runs.ray_runtime import ensure_ray

    if time.perf_counter() > deadline:
        row("pipeline", "bare loop / Ray", "skipped", note="over --budget")
        return
    gpus = 1.0 if device.type == "cuda" else 0.0
    tmp = tempfile.mkdtemp(prefix="prfeval-gpu-bench-")
    try:
        uri = photo_manifest(os.path.join(tmp, "photos"), args.groups, args.side)
        n_bare, t_bare = 0, 0.0
        with busy:
            n_bare, t_bare = bare_loop(uri, os.path.join(tmp, "bare"), args.model, 1, device=str(device))
        setting = f"bare loop, 1 process, {args.groups} groups"
        row("pipeline", setting, f"{n_bare / t_bare:,.1f} triplets/s", busy.mean, f"{t_bare:.1f} s")
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the actor sizes its batches from what is free
        ensure_ray(num_cpus=os.cpu_count())
        if not args.dry_run:  # start Ray Data's machinery and the actor pool once outside the timing
            warm = photo_manifest(os.path.join(tmp, "warm"), 2, args.side)
            pipeline_run(warm, os.path.join(tmp, "warm-out"), args.model, 1, gpus_per_actor=gpus)
        with busy:
            summary, t = pipeline_run(uri, os.path.join(tmp, "ray"), args.model, 1, gpus_per_actor=gpus)
        rate = summary.pairs / t
        note = f"{t:.1f} s, {rate / (n_bare / t_bare):.2f}x bare"
        row("pipeline", "Ray pipeline, decode tasks + 1 actor", f"{rate:,.1f} triplets/s", busy.mean, note)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def print_table() -> None:
    head = ("section", "setting", "result", "GPU busy", "note")
    widths = [max(len(r[i]) for r in [head, *ROWS]) for i in range(len(head))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    print(fmt.format(*head).rstrip())
    print("  ".join("-" * w for w in widths))
    for r in ROWS:
        print(fmt.format(*r).rstrip())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--dry-run", action="store_true", help="same code paths on the CPU, prfnet-tiny, tiny sizes"
    )
    ap.add_argument("--model", default=None, help="variant (default: prfnet; prfnet-tiny with --dry-run)")
    ap.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    ap.add_argument("--batches", type=int, nargs="+", default=None, help="encode batch sizes (besides auto)")
    ap.add_argument("--patch", type=int, default=None, help="encode patch side (default: the model's)")
    ap.add_argument("--seconds", type=float, default=None, help="time per encode measurement")
    ap.add_argument("--groups", type=int, default=None, help="reference groups of 5 JPEG versions")
    ap.add_argument("--side", type=int, default=None, help="side of the references in px")
    ap.add_argument("--budget", type=float, default=540.0, help="seconds; later measurements are skipped")
    args = ap.parse_args(argv)
    dry = args.dry_run
    args.model = args.model or ("prfnet-tiny" if dry else "prfnet")
    args.batches = args.batches or ([2, 4] if dry else [16, 32, 64, 128, 256])
    args.patch = args.patch or (64 if dry else None)
    args.seconds = args.seconds if args.seconds is not None else (0.2 if dry else 2.0)
    args.groups = args.groups or (2 if dry else 40)
    args.side = args.side or (128 if dry else 512)

    if dry:
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("no CUDA device: run on a GPU machine, or with --dry-run for the CPU", file=sys.stderr)
        return 2
    deadline = time.perf_counter() + args.budget
    print(machine())
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        print(
            f"gpu: {torch.cuda.get_device_name(device)}, {total / 2**30:.1f} GiB ({free / 2**30:.1f} free); "
            f"CUDA {torch.version.cuda}"
        )
    print(f"model {args.model}; device {device}; {'dry run' if dry else f'budget {args.budget:.0f} s'}")
    busy = GpuBusy(device)
    if device.type == "cuda" and not busy.available:
        print("GPU utilisation: n/a (torch.cuda.utilization needs NVML: pip install nvidia-ml-py)")

    model, _sha = build_model(args.model, None, device=device)
    bench_encode(model, device, args, deadline, busy)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    bench_pipeline(device, args, deadline, busy)
    print()
    print_table()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
