"""The driver of a training run: prepare the triplets and the split, launch Ray Train, follow the progress.

:func:`run_training` reads (or generates, for ``synthetic:``) the triplets, splits them by reference, writes the
normalised table and ``train.json`` under the output, then runs :func:`pipeline.training.loop.train_loop_per_worker`
on ``workers`` Ray Train workers (``TorchTrainer``). While it runs, each finished epoch's metrics are printed from
``train.json``; the workers print step-level progress (rank 0).

Ray Train's own run folder (``--ray-storage``, default a local temporary folder) holds only its bookkeeping: the
checkpoints are written by rank 0 to ``--output`` with :func:`model.save_checkpoint`.
"""

from __future__ import annotations

import io
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from pipeline.io import storage
from pipeline.runs.lifecycle import Run, read_record
from pipeline.training import metrics, splits, state, synthetic
from pipeline.training.config import TrainConfig
from pipeline.training.triplets import TripletError, read_triplets

MAX_LISTED_REFS = 50


class TrainInputError(ValueError):
    """Input, options or an output folder that the run cannot use (a usage error)."""


class TrainFailed(RuntimeError):
    """The workers failed (after ``max_failures`` restarts); finished epochs are saved and ``--resume`` continues."""


@dataclass
class TrainSummary:
    run_id: str
    output: str
    epochs_done: int
    epochs_run: int
    checkpoint: str | None
    sha256: str | None
    validation: dict | None
    seconds: float
    history: list[dict] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- data


def _refs(df: pd.DataFrame) -> dict:
    refs = sorted(df["ref_id"].unique())
    out: dict = {"triplets": len(df), "references": len(refs)}
    if len(refs) <= MAX_LISTED_REFS:
        out["reference_ids"] = refs
    families = df["family"].replace("", "unknown").value_counts().sort_index()
    if len(families) > 1 or families.index[0] != "unknown":
        out["per_family"] = {str(k): int(v) for k, v in families.items()}
    return out


def describe(cfg: TrainConfig, df: pd.DataFrame, description: str, labels: str) -> dict:
    """The ``data`` block of every checkpoint's metadata."""
    soft = bool(((df["label"] > 0) & (df["label"] < 1)).any())
    return {
        "source": storage.display(cfg.triplets),
        "description": description,
        "labels": labels,
        "label_kind": "soft" if soft else "hard",
        "split": "by reference (ref_id): "
        + (f"held out {', '.join(cfg.holdout)}" if cfg.holdout else f"val_fraction {cfg.val_fraction}"),
        "train": _refs(df[df["split"] == "train"]),
        "validation": _refs(df[df["split"] == "val"]) if (df["split"] == "val").any() else {"triplets": 0},
    }


def load_triplets(cfg: TrainConfig, log: Callable[[str], None] = print) -> tuple[pd.DataFrame, dict]:
    """The normalised, split triplet table and its description (generating a ``synthetic:`` set first)."""
    try:
        if synthetic.is_synthetic_uri(cfg.triplets):
            spec = synthetic.parse(cfg.triplets)
            folder = storage.join(cfg.output, "synthetic")
            log(f"generating known-order triplets ({spec.uri}) in {storage.display(folder)}")
            df = read_triplets(synthetic.generate(spec, folder, log=log))
            description = synthetic.describe(spec)
            labels = "known order by construction, no human raters: not calibrated to human judgments"
        else:
            df = read_triplets(cfg.triplets, images=cfg.images, originals=cfg.originals)
            description = f"2AFC triplets from {storage.display(cfg.triplets)}"
            labels = "as given in the triplet input (P(A closer); soft labels are rater fractions)"
        df = splits.assign(df, holdout=cfg.holdout, val_fraction=cfg.val_fraction, seed=cfg.seed)
    except (TripletError, synthetic.SyntheticError, splits.SplitError) as e:
        raise TrainInputError(str(e)) from None
    return df.reset_index(drop=True), describe(cfg, df, description, labels)


# --------------------------------------------------------------------------------------------- checks


def check_model(cfg: TrainConfig) -> int:
    """Build the model once on the driver (a wrong name or pretrained option fails here); returns the crop."""
    from model import UnknownModelError
    from pipeline.training.loop import build_model

    try:
        net = build_model(cfg)
    except UnknownModelError as e:
        raise TrainInputError(str(e)) from None
    except (ValueError, OSError, RuntimeError) as e:  # pretrained weights that cannot be had, a bad file
        raise TrainInputError(f"cannot build {cfg.model!r}: {e}") from None
    crop = int(cfg.crop or net.meta["patch_size"])
    if crop < int(net.meta.get("min_size", 32)):
        raise TrainInputError(
            f"--crop must be at least the model's minimum size {net.meta.get('min_size', 32)}"
        )
    return crop


def check_resources(cfg: TrainConfig) -> None:
    """On a local Ray, fail fast when the workers cannot all be placed (a joined cluster may still autoscale)."""
    import ray

    total = ray.cluster_resources()
    need_cpu = cfg.workers * cfg.cpus_per_worker
    need_gpu = cfg.workers if cfg.use_gpu else 0
    short = []
    if total.get("CPU", 0) < need_cpu:
        short.append(
            f"{need_cpu:g} CPU ({cfg.workers} worker(s) x {cfg.cpus_per_worker:g}); it has {total.get('CPU', 0):g}"
        )
    if total.get("GPU", 0) < need_gpu:
        short.append(f"{need_gpu} GPU; it has {total.get('GPU', 0):g}")
    if not short:
        return
    message = f"the Ray cluster lacks {' and '.join(short)}"
    if os.environ.get("RAY_ADDRESS"):
        print(f"prfeval train: {message}; waiting for the cluster to scale up", flush=True)
        return
    raise TrainInputError(f"{message}; lower --workers or --cpus-per-worker")


def _resume_state(cfg: TrainConfig, resume: bool) -> dict | None:
    previous = read_record(cfg.output, state.STATE_FILE)
    if previous is None:
        return None
    if not resume:
        raise TrainInputError(
            f"{storage.display(cfg.output)} already holds a training run ({previous.get('epochs_done', 0)} "
            "epoch(s) done); pass --resume to continue it, or choose another --output"
        )
    return previous


# --------------------------------------------------------------------------------------------- the run


def _follow(cfg: TrainConfig, stop: threading.Event, shown: set[int], log: Callable[[str], None]) -> None:
    """Print each epoch's metrics as soon as ``train.json`` records it."""
    while not stop.wait(3.0):
        _print_new_epochs(cfg, shown, log)


def _print_new_epochs(cfg: TrainConfig, shown: set[int], log: Callable[[str], None]) -> None:
    try:
        run = state.read_state(cfg.output) or {}
    except Exception:  # a half-visible object on a flaky store: try again at the next poll
        return
    for h in run.get("history", []):
        if h["epoch"] in shown:
            continue
        shown.add(h["epoch"])
        log(
            f"epoch {h['epoch']}/{run.get('epochs_planned', cfg.epochs)}: train loss {h['train_loss']:.4f} "
            f"({h['train_seconds']:.0f} s); checkpoint {h['checkpoint']}"
        )
        if h.get("validation"):
            log("held-out validation:\n" + metrics.table(h["validation"]))


def _absolute_paths(cfg: TrainConfig) -> None:
    """Local paths made absolute: the workers run in folders of their own, and on other machines."""
    for name in (
        "output",
        "images",
        "originals",
        "pretrained_file",
        "init_checkpoint",
        "ray_storage",
        "triplets",
    ):
        uri = getattr(cfg, name)
        if uri and storage.is_local(uri) and not (name == "triplets" and synthetic.is_synthetic_uri(uri)):
            setattr(cfg, name, storage.canonical(uri))


def run_training(
    cfg: TrainConfig, *, resume: bool = False, log: Callable[[str], None] = print
) -> TrainSummary:
    """Train ``cfg.model`` on ``cfg.triplets`` into ``cfg.output``; with ``resume``, continue the run found there."""
    started = time.perf_counter()
    _absolute_paths(cfg)
    previous = _resume_state(cfg, resume)
    cfg.crop = check_model(cfg)
    if previous is not None:
        try:
            data = storage.read_bytes(storage.join(cfg.output, state.TRIPLETS_FILE))
        except FileNotFoundError:
            raise TrainInputError(
                f"{storage.display(cfg.output)}: train.json without its triplets table"
            ) from None
        table = pd.read_parquet(io.BytesIO(data))
        val_refs = sorted(table.loc[table["split"] == "val", "ref_id"].unique())
        if previous.get("fingerprint") != cfg.fingerprint(val_refs):
            was = previous.get("config", {})
            changed = [k for k in TrainConfig._FINGERPRINT if was.get(k) != getattr(cfg, k)]
            raise TrainInputError(
                f"--resume: {storage.display(cfg.output)} was trained with other settings "
                f"({', '.join(changed) or 'triplets or split'} differ); use the same options, or a new --output"
            )
        cfg.data = previous["data"]
        run = Run.load(cfg.output, file=state.STATE_FILE)
        done = int(run.record.get("epochs_done", 0))
        if done >= cfg.epochs:
            log(
                f"{storage.display(cfg.output)}: {done} epoch(s) already done (--epochs {cfg.epochs}); nothing to do"
            )
            return _summary(cfg, run.record, 0, started)
        log(f"resuming {run.run_id}: {done} epoch(s) done, continuing to {cfg.epochs}")
    else:
        table, cfg.data = load_triplets(cfg, log)
        val_refs = sorted(table.loc[table["split"] == "val", "ref_id"].unique())
        storage.write_bytes(storage.join(cfg.output, state.TRIPLETS_FILE), table.to_parquet(index=False))
        run = Run.open(
            cfg.output,
            kind="train",
            identity=cfg.identity(val_refs),
            file=state.STATE_FILE,
            status="starting",
            config={k: v for k, v in cfg.to_dict().items() if k not in ("data", "command")},
            command=cfg.command,
            fields={"data": cfg.data, "epochs_done": 0, "history": []},
        )
        done = 0
        t, v = cfg.data["train"], cfg.data["validation"]
        log(
            f"triplets: {t['triplets']} for training ({t['references']} references), {v['triplets']} held out "
            f"({v.get('references', 0)} references: {', '.join(v.get('reference_ids', [])[:10])})"
        )
    _launch(cfg, run.run_id, log)
    record = run.refresh()  # the workers wrote each epoch into it
    epochs = int(record.get("epochs_done", 0))
    record = run.finish(
        counts={"epochs_done": epochs, "epochs_run": epochs - done}, status=record.get("status")
    )
    return _summary(cfg, record, epochs - done, started)


def _launch(cfg: TrainConfig, run_id: str, log: Callable[[str], None]) -> None:
    import ray.train
    from ray.train.torch import TorchTrainer

    from pipeline.runs.ray_runtime import ensure_ray
    from pipeline.training.loop import train_loop_per_worker

    ensure_ray()
    check_resources(cfg)
    resources = {"CPU": cfg.cpus_per_worker} | ({"GPU": 1} if cfg.use_gpu else {})
    storage_path = cfg.ray_storage or os.path.join(tempfile.gettempdir(), "prfeval-ray-train")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=cfg.to_dict(),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=ray.train.RunConfig(
            name=run_id + f"-{int(time.time())}",
            storage_path=storage_path,
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
        ),
    )
    log(
        f"training {cfg.model} on {cfg.workers} Ray Train worker(s) ({'GPU' if cfg.use_gpu else 'CPU'}); "
        f"epochs up to {cfg.epochs}; output {storage.display(cfg.output)}"
    )
    shown = {h["epoch"] for h in (state.read_state(cfg.output) or {}).get("history", [])}
    stop = threading.Event()
    follower = threading.Thread(
        target=_follow, args=(cfg, stop, shown, log), name="prfeval-train-progress", daemon=True
    )
    follower.start()
    try:
        trainer.fit()
    except Exception as e:  # Ray Train wraps the workers' errors (WorkerGroupError, ControllerError)
        raise TrainFailed(storage.redact(str(e))) from None
    finally:
        stop.set()
        follower.join()
        _print_new_epochs(cfg, shown, log)


def _summary(cfg: TrainConfig, run: dict, epochs_run: int, started: float) -> TrainSummary:
    history = run.get("history", [])
    last = history[-1] if history else {}
    latest = run.get("latest") or {}
    return TrainSummary(
        run_id=run.get("run_id", ""),
        output=storage.display(cfg.output),
        epochs_done=int(run.get("epochs_done", 0)),
        epochs_run=epochs_run,
        checkpoint=storage.display(latest["final"]) if latest.get("final") else None,
        sha256=latest.get("sha256"),
        validation=last.get("validation"),
        seconds=time.perf_counter() - started,
        history=history,
    )
