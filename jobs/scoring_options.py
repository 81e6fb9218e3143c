"""The options of the shared PRFNet scoring pool, for every command that scores (evaluate, regress, clic)."""

from __future__ import annotations

import argparse
import contextlib
import shlex
import sys

from jobs.common import UsageError, add_verbose_option
from pipeline.image import decoding


def add_scoring_options(p: argparse.ArgumentParser, *, unit: str = "reference group") -> None:
    """Model, actor pool, precision and run-control options; ``unit`` names what one scoring task handles."""
    g = p.add_argument_group("scoring (the Ray actor pool)")
    g.add_argument("--model", default="prfnet-tiny", help="registered model name (default: prfnet-tiny)")
    g.add_argument("--checkpoint", help="checkpoint URI (safetensors); default: the packaged one for --model")
    g.add_argument(
        "--actors",
        type=int,
        help="scoring actors, one model replica each (default: as many as the cluster's nodes hold, one per "
        "node's worth of CPUs, or per GPU slot with --gpus-per-actor)",
    )
    g.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per actor, fractional allowed")
    g.add_argument(
        "--cpus-per-actor",
        type=float,
        help="CPUs reserved per actor (default: the largest alive node's CPUs less one for decoding; 1 with GPUs)",
    )
    g.add_argument("--batch-size", type=int, help="patches per model call (default: 16 on CPU, 128 on CUDA)")
    g.add_argument("--patch", type=int, help="patch size in pixels (default: the model's)")
    g.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32", help="autocast precision")
    g.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="default: CUDA when present"
    )
    g.add_argument(
        "--max-pixels", type=int, default=decoding.DEFAULT_MAX_PIXELS, help="decompression-bomb limit"
    )
    g.add_argument(
        "--retry-errors", action="store_true", help=f"score again each {unit} that recorded errors"
    )
    g.add_argument(
        "--stall-timeout",
        type=float,
        default=900.0,
        help=f"stop with a clear message when no {unit} finishes for this many seconds (default: 900; "
        "0 waits forever, e.g. for an autoscaler that is slow to bring GPUs)",
    )
    g.add_argument(
        "--metrics",
        default="psnr,psnr_y,ms_ssim",
        help="full-reference metrics to measure, comma-separated, each an images column, a report axis and a "
        "query column (default: psnr,psnr_y,ms_ssim; `prfeval metrics` lists them, e.g. ssimulacra2, "
        "butteraugli, ciede2000)",
    )
    g.add_argument("--no-progress", action="store_true", help="hide Ray Data's progress bars")
    add_verbose_option(g)


def scoring_config(args: argparse.Namespace, name: str, argv: list[str] | None, **fields):
    """A :class:`pipeline.scoring.driver.ScoringConfig` from the scoring options plus the command's own ``fields``
    (output, pairs, allowed roots...).

    The model, metric and checkpoint are checked here, on the driver, before any work starts
    (:func:`pipeline.scoring.driver.preflight`): a bad one is a :class:`UsageError`."""
    from model import UnknownModelError
    from pipeline.image.metrics import parse_names
    from pipeline.scoring.driver import ScoringConfig, ScoringInputError, preflight

    if args.actors is not None and args.actors < 1:
        raise UsageError("--actors must be at least 1")
    if args.cpus_per_actor is not None and args.cpus_per_actor <= 0:
        raise UsageError("--cpus-per-actor must be > 0")
    if args.gpus_per_actor < 0:
        raise UsageError("--gpus-per-actor must be >= 0")
    cfg = ScoringConfig(
        model=args.model,
        checkpoint=args.checkpoint,
        actors=args.actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        batch_size=args.batch_size,
        patch=args.patch,
        precision=args.precision,
        device=args.device,
        max_pixels=args.max_pixels,
        retry_errors=args.retry_errors,
        stall_timeout=args.stall_timeout or None,
        progress=not args.no_progress,
        metrics=tuple(parse_names(getattr(args, "metrics", None))),
        command=shlex.join(["prfeval", name, *(argv if argv is not None else sys.argv[2:])]),
        **fields,
    )
    try:
        preflight(cfg)
    except (ScoringInputError, UnknownModelError) as e:
        raise UsageError(str(e)) from None
    return cfg


@contextlib.contextmanager
def scoring_errors():
    """A scoring run's failures as every scoring command reports them, in one line with exit 2: an input the
    driver refuses (manifest, an output of another run, resources, checkpoint, model or metric name) as a usage
    error; a run that stopped (a stalled cluster, actors that cannot start) with what it said, finished groups
    kept for a rerun."""
    from model import UnknownModelError
    from pipeline.scoring.driver import (
        OutputConflict,
        ResourceError,
        ScoringFailed,
        ScoringInputError,
        StalledError,
    )
    from pipeline.scoring.manifest import ManifestError

    try:
        yield
    except (ManifestError, OutputConflict, ResourceError, ScoringInputError, UnknownModelError) as e:
        raise UsageError(str(e)) from None
    except (StalledError, ScoringFailed) as e:  # their messages say the run stopped and that a rerun resumes
        raise UsageError(str(e)) from None
