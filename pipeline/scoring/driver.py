"""`evaluate` on Ray Data: manifest groups -> CPU load tasks -> PRFNet actor pool -> per-group Parquet writes.

The stages, each a plain function or class with a thin Ray adapter:

1. the driver reads and validates the manifest, groups it by reference (one row per group, so no shuffle is
   needed) and leaves out groups already finished in the output folder;
2. ``load`` (CPU tasks): read through fsspec, decode, check sizes, classic metrics, cut patches
   (:mod:`pipeline.scoring.load`) — ahead of the actors, so a GPU never waits on image decoding;
3. ``score`` (actor pool, one PRFNet replica per actor, GPU when the node has one): encode each image once,
   compare every requested pair from the cached features (:mod:`pipeline.scoring.scorer`);
4. ``write`` (CPU tasks): the group's images/pairs/errors Parquet files (:mod:`pipeline.scoring.results`).

Only the checkpoint's URI is sent to actors, never the weights.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Literal

from pipeline.image import decoding
from pipeline.io import storage
from pipeline.io.records import ReferenceGroup
from pipeline.runs.lifecycle import FINISHED, INCOMPLETE, Run, config_record
from pipeline.runs.lifecycle import OutputConflict as OutputConflict  # raised by run_groups
from pipeline.scoring import manifest, pairing, results
from pipeline.scoring.stages import ScoreActor, group_row, load_stage, write_stage

log = logging.getLogger(__name__)


LOAD_CPUS = 0.75  # a decode task; with a write task (0.25) it fits on the CPU the actors leave free


def input_blocks(n_groups: int) -> int:
    """Blocks the groups are cut into: one group per block for small runs, so decoding and scoring overlap from
    the first group; for large manifests about eight per block, so per-task overhead stays small."""
    return n_groups if n_groups <= 256 else max(256, n_groups // 8)


def decode_concurrency(actors: int) -> int:
    """Decode tasks in flight: two per actor keeps every actor fed. Never equal to the actor count, on purpose:
    Ray Data fuses a task stage into the next actor stage when their sizes match, which would move image decoding
    into the actors and make them wait on it."""
    return 2 * actors


class ResourceError(RuntimeError):
    """The cluster lacks what the run asks for (e.g. GPUs): fail fast instead of waiting forever."""


class StalledError(RuntimeError):
    """No reference group finished within the stall timeout (e.g. the nodes that hosted the actors are gone)."""


def rows_with_deadline(rows, timeout: float | None, *, describe=lambda: ""):
    """Yield from ``rows``, but raise :class:`StalledError` when no row arrives for ``timeout`` seconds.

    The iterator is drained by a daemon thread, so a pipeline that waits forever for resources that will never
    come (a removed node, no replacement) stops the run with a clear message instead of hanging silently.
    """
    if not timeout:
        yield from rows
        return
    box: queue.Queue = queue.Queue(maxsize=64)
    done = object()

    def drain():
        try:
            for row in rows:
                box.put(("row", row))
            box.put(("end", done))
        except BaseException as e:  # handed to the consumer, raised there
            box.put(("error", e))

    threading.Thread(target=drain, name="prfeval-results", daemon=True).start()
    while True:
        try:
            kind, item = box.get(timeout=timeout)
        except queue.Empty:
            raise StalledError(
                f"no reference group finished in {timeout:g} s; the cluster cannot make progress "
                f"({describe()}). Finished groups are saved: rerun the same command to resume"
            ) from None
        if kind == "row":
            yield item
        elif kind == "error":
            raise item
        else:
            return


def _cluster_facts() -> str:
    import ray

    try:
        alive = [n for n in ray.nodes() if n.get("Alive")]
        res = ray.cluster_resources()
        return f"{len(alive)} node(s) alive, {res.get('CPU', 0):g} CPU, {res.get('GPU', 0):g} GPU"
    except Exception:  # the facts are a courtesy; the stall itself is the message
        return "cluster state unknown"


@dataclass
class ScoringConfig:
    """How to score groups into ``output`` on the actor pool: the options every scoring command shares."""

    output: str
    model: str = "prfnet-tiny"
    checkpoint: str | None = None
    pairs: str = "all"
    match_tolerance: float = pairing.DEFAULT_MATCH_TOLERANCE
    metrics: tuple[str, ...] = ("psnr", "psnr_y", "ms_ssim")  # full-reference metrics (image.metrics.select)
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float | None = None
    batch_size: int | None = None
    patch: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    max_pixels: int | None = decoding.DEFAULT_MAX_PIXELS
    allow_roots: list[str] | None = None
    retry_errors: bool = False
    stall_timeout: float | None = 900.0
    progress: bool = True
    command: str = ""


@dataclass
class EvaluateConfig:
    """`evaluate`'s own inputs, a manifest and an optional codec table, and how to score them."""

    manifest: str
    scoring: ScoringConfig
    codecs: str | None = None


@dataclass
class EvaluateSummary:
    run_id: str
    output: str
    groups_total: int = 0
    groups_skipped: int = 0
    groups_done: int = 0
    images: int = 0
    pairs: int = 0
    errors: int = 0
    seconds: float = 0.0
    checkpoint_sha256: str | None = None
    actor_peak_rss_mb: float = 0.0
    failed_groups: list[str] = field(default_factory=list)

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------- driver


UNTRAINED = "untrained-seed0"  # the checkpoint id of randomly initialised weights


def _checkpoint_id(cfg: ScoringConfig) -> str:
    from model.bundled import default_checkpoint

    uri = cfg.checkpoint or default_checkpoint(cfg.model)
    if not uri:
        return UNTRAINED
    try:
        return storage.sha256_of(uri)
    except FileNotFoundError:
        raise manifest.ManifestError(f"checkpoint {storage.display(uri)}: no such file") from None


def check_resources(cfg: ScoringConfig) -> float:
    """Fail fast when the cluster cannot host the actors; returns the CPUs each actor reserves."""
    import ray

    total = ray.cluster_resources()
    if cfg.gpus_per_actor > 0:
        have = total.get("GPU", 0.0)
        per_node = max((n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)
        need = cfg.gpus_per_actor * cfg.actors
        if have < need or per_node < cfg.gpus_per_actor:
            raise ResourceError(
                f"asked for {cfg.actors} actor(s) x {cfg.gpus_per_actor:g} GPU = {need:g} GPU, but the Ray cluster "
                f"has {have:g} GPU in total (at most {per_node:g} on one node); lower --actors/--gpus-per-actor, "
                "or use --gpus-per-actor 0 to score on CPUs"
            )
    cpus = total.get("CPU", 1.0)
    if cfg.cpus_per_actor is not None:
        per_actor = cfg.cpus_per_actor
    elif cfg.gpus_per_actor > 0:
        per_actor = 1.0
    else:  # leave one CPU for the load and write tasks, share the rest between actors
        per_actor = max(0.25, (cpus - 1.0) / cfg.actors) if cpus > 1 else 0.5
    if per_actor * cfg.actors > cpus:
        raise ResourceError(
            f"{cfg.actors} actor(s) x {per_actor:g} CPU exceed the cluster's {cpus:g} CPUs; lower --actors"
        )
    return per_actor


def score_groups(
    groups: list[ReferenceGroup | dict],
    cfg: EvaluateConfig,
    *,
    run_id: str,
    codec_table,
    patch: int,
    min_size: int,
    summary: EvaluateSummary,
) -> EvaluateSummary:
    """Run load -> score -> write on Ray Data for ``groups`` (:class:`pipeline.io.records.ReferenceGroup` records,
    or dicts of the same shape).

    A group may carry ``pairs``: an explicit list of ``[a_id, b_id]`` to score instead of ``cfg.pairs``. Pairs are
    chosen in the load tasks, so the actors only encode and compare. Counts are added to ``summary``. This is the one scoring path of prfeval; ``evaluate`` and ``regress`` both use it.
    """
    import ray

    from pipeline.runs.ray_runtime import data_context, ensure_ray

    ensure_ray()
    data_context(progress=cfg.progress)
    per_actor_cpus = check_resources(cfg)
    threads = max(1, math.floor(per_actor_cpus))
    ds = ray.data.from_items(
        [group_row(g) for g in groups],
        override_num_blocks=input_blocks(len(groups)),
    )
    ds = ds.map(
        load_stage,
        fn_kwargs={
            "patch": patch,
            "min_size": min_size,
            "max_pixels": cfg.max_pixels,
            "allow_roots": cfg.allow_roots,
            "pairs": cfg.pairs,
            "match_tolerance": cfg.match_tolerance,
            "metric_names": tuple(cfg.metrics),
        },
        compute=ray.data.TaskPoolStrategy(size=decode_concurrency(cfg.actors)),
        num_cpus=LOAD_CPUS,
    )
    ds = ds.map_batches(
        ScoreActor,
        fn_constructor_kwargs={
            "model": cfg.model,
            "checkpoint": cfg.checkpoint,
            "device": cfg.device,
            "precision": cfg.precision,
            "batch_size": cfg.batch_size,
            "threads": threads,
        },
        compute=ray.data.ActorPoolStrategy(size=cfg.actors),
        batch_size=1,
        batch_format="pyarrow",  # metadata columns pass through untouched; patches are read as zero-copy views
        num_cpus=per_actor_cpus,
        num_gpus=cfg.gpus_per_actor or None,
        zero_copy_batch=True,
    )
    ds = ds.map(
        write_stage,
        fn_kwargs={"output": cfg.output, "run_id": run_id, "codec_table": codec_table},
        num_cpus=0.25,
    )
    for row in rows_with_deadline(ds.iter_rows(), cfg.stall_timeout, describe=_cluster_facts):
        summary.groups_done += 1
        summary.images += row["images"]
        summary.pairs += row["pairs"]
        summary.errors += row["errors"]
        summary.checkpoint_sha256 = row["checkpoint_sha256"]
        summary.actor_peak_rss_mb = max(summary.actor_peak_rss_mb, row["peak_rss_mb"])
        if row["failed"]:
            summary.failed_groups.append(row["key"])
    return summary


def _metric_identity(cfg: ScoringConfig) -> dict:
    """The metrics in the run's fingerprint, when they are not the default ones (so default runs keep their id)."""
    from pipeline.image.metrics import DEFAULT_METRICS

    return {} if tuple(cfg.metrics) == DEFAULT_METRICS else {"metrics": list(cfg.metrics)}


def _metric_record(cfg: ScoringConfig) -> list[dict]:
    """The selected metrics' metadata for run.json: name, unit, direction, implementation and version."""
    from pipeline.image.metrics import describe

    return describe(list(cfg.metrics))


def _config_record(cfg: ScoringConfig, inputs: dict | None = None) -> dict:
    """The run's configuration as recorded in run.json: the command's ``inputs`` (evaluate: manifest, codecs) and
    the scoring options, URIs without credentials, no command line."""
    return config_record({**(inputs or {}), **{k: v for k, v in asdict(cfg).items() if k != "command"}})


def run_groups(
    groups: list[dict],
    cfg: ScoringConfig,
    *,
    kind: str,
    identity: dict,
    inputs: dict | None = None,
    codec_table=None,
    errors: list[dict] | None = None,
    run_fields: dict | None = None,
    registry: str | Literal[False] | None = False,
    finish: bool = True,
) -> tuple[EvaluateSummary, Run]:
    """Score ``groups`` into ``cfg.output`` resumably; the one driver of `evaluate`, `regress` and `clic`.

    ``identity`` says what makes two runs' rows comparable (inputs, pairing); with the model, the checkpoint's
    sha256 and the patch size it forms the run's fingerprint (:class:`pipeline.runs.lifecycle.Run`). An output
    holding another fingerprint is refused (:class:`OutputConflict`); one holding the same is resumed under the
    same run id, skipping the groups already finished. ``inputs`` are recorded in the run's config beside the
    scoring options. ``errors`` (rows that belong to no group, e.g. manifest rows) are written once. ``run.json`` is
    written at the start (status ``running``, ``run_fields`` merged in) and, unless ``finish`` is false, at the end
    (appended to ``registry``, see :meth:`Run.open`). With ``finish=False`` the counts and the status are staged
    on the returned run and the command calls ``run.finish(fields=...)`` once its own outputs are written.
    """
    from model import model_info

    started = time.perf_counter()
    info = model_info(cfg.model)
    patch = int(cfg.patch or info["patch_size"])
    checkpoint_id = _checkpoint_id(cfg)
    run = Run.open(
        cfg.output,
        kind=kind,
        identity={
            **identity,
            "model": cfg.model,
            "checkpoint": checkpoint_id,
            "patch": patch,
            **_metric_identity(cfg),
        },
        prefix="run" if kind == "evaluate" else kind,
        command=cfg.command,
        fields={
            "config": _config_record(cfg, inputs),
            "model": cfg.model,
            "checkpoint_sha256": checkpoint_id if checkpoint_id != UNTRAINED else None,
            "metrics": _metric_record(cfg),
            **(run_fields or {}),
        },
        registry=registry,
    )
    done = run.finished("images")
    if cfg.retry_errors:
        done -= run.finished("errors")
    todo = [g for g in map(ReferenceGroup.of, groups) if g.key not in done]
    summary = EvaluateSummary(run_id=run.run_id, output=storage.display(cfg.output), groups_total=len(groups),
                              groups_skipped=len(groups) - len(todo))  # fmt: skip
    if errors:
        results.write_errors(cfg.output, "input", errors, run.run_id)
        summary.errors += len(errors)
    if todo:
        score_groups(todo, cfg, run_id=run.run_id, codec_table=codec_table, patch=patch,
                     min_size=int(info.get("min_size", 32)), summary=summary)  # fmt: skip
    summary.seconds = time.perf_counter() - started
    run.update(
        counts={
            "groups": len(groups),
            "groups_scored_last": summary.groups_done,
            "groups_failed_last": len(summary.failed_groups),
            "images": results.count_rows(cfg.output, "images"),
            "pairs": results.count_rows(cfg.output, "pairs"),
            "errors": results.count_rows(cfg.output, "errors"),
            "seconds_last": round(summary.seconds, 3),
        },
        checkpoint_sha256=summary.checkpoint_sha256 or run.record["checkpoint_sha256"],
        status=FINISHED if not summary.failed_groups else INCOMPLETE,
    )
    if finish:
        run.finish()
    return summary, run


def run_evaluate(cfg: EvaluateConfig, *, registry: str | Literal[False] | None = False) -> EvaluateSummary:
    """Score a manifest into ``cfg.scoring.output``; resumable, idempotent per reference group. The finished run
    is appended to ``registry`` (see :meth:`pipeline.runs.lifecycle.Run.open`)."""
    scoring = cfg.scoring
    if scoring.pairs not in pairing.STRATEGIES:
        raise manifest.ManifestError(f"--pairs must be one of {', '.join(pairing.STRATEGIES)}")
    mf = manifest.read_manifest(cfg.manifest)
    codec_table = manifest.read_codec_table(cfg.codecs) if cfg.codecs else None
    identity = {
        "manifest": storage.canonical(cfg.manifest),
        "codecs": cfg.codecs and storage.canonical(cfg.codecs),
        "pairs": scoring.pairs,
        "match_tolerance": scoring.match_tolerance if scoring.pairs == "matched" else None,
    }
    summary, _ = run_groups(manifest.groups(mf), scoring, kind="evaluate", identity=identity,
                            inputs={"manifest": cfg.manifest, "codecs": cfg.codecs}, codec_table=codec_table,
                            errors=mf.errors, registry=registry)  # fmt: skip
    return summary
