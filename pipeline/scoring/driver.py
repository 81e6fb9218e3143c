"""`evaluate` on Ray Data: manifest groups -> CPU load tasks -> PRFNet actor pool -> per-group Parquet writes.

The stages, each a plain function or class with a thin Ray adapter:

1. the driver reads and validates the manifest, groups it by reference (one row per group, so no shuffle is
   needed) and leaves out groups already finished in the output folder;
2. ``load`` (CPU tasks): read through fsspec, decode, check sizes, classic metrics, cut patches
   (:mod:`pipeline.scoring.load`) — ahead of the actors, so a GPU never waits on image decoding;
3. ``score`` (actor pool, one PRFNet replica per actor, GPU when the node has one): encode each image once,
   compare every requested pair from the cached features (:mod:`pipeline.scoring.scorer`);
4. ``write`` (CPU tasks): the group's images/pairs/errors Parquet parts (:mod:`pipeline.scoring.results`);
5. when every group is done, the driver compacts the parts into a few large files per table and publishes them
   with one index write (:mod:`pipeline.scoring.compaction`).

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
from pipeline.io import storage, tables
from pipeline.io.records import ReferenceGroup
from pipeline.runs.lifecycle import FINISHED, INCOMPLETE, Run, config_record
from pipeline.runs.lifecycle import OutputConflict as OutputConflict  # raised by run_groups
from pipeline.scoring import manifest, pairing, results
from pipeline.scoring.grouping import ManifestGroups
from pipeline.scoring.stages import ScoreActor, input_table, load_stage, write_stage

log = logging.getLogger(__name__)


LOAD_CPUS = 0.75  # a decode task; with a write task (0.25) it fits on the CPU the actors leave free
WRITE_CPUS = 0.25
WORK_CPUS = LOAD_CPUS + WRITE_CPUS  # what one node must keep free for a decode and a write task


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


class ScoringInputError(ValueError):
    """A model, checkpoint or metric the run cannot use, found on the driver before Ray starts."""


class ScoringFailed(RuntimeError):
    """A task or actor failed for a reason that is not one row's input; the message names the cause."""


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
    actors: int | None = None  # default: from the cluster's nodes (see plan_pool)
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
    actors: int = 0
    cpus_per_actor: float = 0.0
    failed_groups: list[str] = field(default_factory=list)

    @property
    def pairs_per_second(self) -> float:
        return self.pairs / self.seconds if self.seconds > 0 else 0.0


# ---------------------------------------------------------------- driver


UNTRAINED = "untrained-seed0"  # the checkpoint id of randomly initialised weights


def preflight(cfg: ScoringConfig) -> str:
    """Check on the driver, before Ray starts, what every actor would otherwise fail on: the model name, the
    metric names and the checkpoint (safetensors header, format version, the model it holds == ``cfg.model``).

    Only the header is parsed: no weights are built, nothing is unpickled. Returns the checkpoint id (the sha256
    of its bytes, or :data:`UNTRAINED`). Raises :class:`ScoringInputError`, or ``UnknownModelError`` (with its
    "did you mean").
    """
    from model import model_info

    model_info(cfg.model)
    metrics = getattr(cfg, "metrics", None)
    if metrics:
        from pipeline.image import metrics as metrics_mod

        try:
            cfg.metrics = metrics_mod.select(metrics)  # unknown ("did you mean") or unavailable here
        except (metrics_mod.UnknownMetricError, metrics_mod.MetricUnavailableError) as e:
            raise ScoringInputError(str(e)) from None
    return checkpoint_id(cfg.model, cfg.checkpoint)


_CHECKED: dict[tuple[str, str], str] = {}  # (model, checkpoint URI) -> sha256, for checkpoints found valid


def checkpoint_id(model: str, checkpoint: str | None) -> str:
    """The sha256 of ``checkpoint`` (default: the packaged one of ``model``) once its header says it is a prfeval
    safetensors checkpoint of ``model``; :data:`UNTRAINED` when there is none. :class:`ScoringInputError` else."""
    import hashlib

    from model.bundled import default_checkpoint
    from model.checkpoint import CheckpointError, checkpoint_metadata

    uri = checkpoint or default_checkpoint(model)
    if not uri:
        return UNTRAINED
    if (model, uri) in _CHECKED:
        return _CHECKED[model, uri]
    where = f"checkpoint {storage.display(uri)}"
    data = tables.read_input(uri, error=ScoringInputError, what="checkpoint", allow_empty=True)
    try:
        meta = checkpoint_metadata(data, where)
    except CheckpointError as e:
        raise ScoringInputError(storage.redact(str(e))) from None
    held = meta.get("model")
    if held != model:
        raise ScoringInputError(
            f"{where} holds {held!r}, not --model {model!r}: pass --model {held} or a checkpoint of {model}"
        )
    _CHECKED[model, uri] = hashlib.sha256(data).hexdigest()
    return _CHECKED[model, uri]


@dataclass(frozen=True)
class Pool:
    """The actor pool a run asks for: how many actors, and the CPUs each reserves."""

    actors: int
    cpus_per_actor: float


_EPS = 1e-9


def _node_resources(nodes: list[dict]) -> list[dict]:
    return [n.get("Resources") or {} for n in nodes if n.get("Alive")]


def _default_cpus(cpus: list[float], actors: int | None) -> float:
    """CPUs per scoring actor when not given: the largest node's CPUs less room for a decode and a write task (a
    whole node when the nodes are small and several); with ``actors`` given, the most that lets that many fit
    while some node keeps room to decode."""
    usable = [c for c in cpus if c > 0]
    largest = max(usable, default=0.0)
    if largest >= 2:
        per_actor = largest - WORK_CPUS
    elif len(usable) > 1:  # small nodes: an actor takes one, the others decode
        per_actor = largest
    else:  # one small machine: share it
        return 0.5
    if not actors:
        return per_actor
    shares = {
        max(0.25, x) for c in usable for k in range(1, actors + 1) for x in ((c - WORK_CPUS) / k, c / k)
    }
    fits = [p for p in shares if p <= per_actor + _EPS and _room_to_decode(_placed(usable, p, actors))]
    return max(fits, default=0.25)


def _room_to_decode(free: list[float] | None) -> bool:
    """Whether, with the actors placed, some node can still run a decode task and the cluster a write task."""
    return free is not None and max(free, default=0.0) + _EPS >= LOAD_CPUS and sum(free) + _EPS >= WORK_CPUS


def _placed(
    cpus: list[float], per_actor: float, actors: int, gpus: list[float] | None = None, gpa: float = 0.0
) -> list[float] | None:
    """The CPUs left on each node once ``actors`` of ``per_actor`` CPUs (and ``gpa`` GPUs) are placed, each on the
    node with most CPU room that has them (Ray Data spreads its actors); None when they do not fit."""
    free, free_gpu = list(cpus), list(gpus or [0.0] * len(cpus))
    for _ in range(actors):
        fit = [i for i in range(len(free)) if free[i] + _EPS >= per_actor and free_gpu[i] + _EPS >= gpa]
        if not fit:
            return None
        i = max(fit, key=free.__getitem__)
        free[i] -= per_actor
        free_gpu[i] -= gpa
    return free


def _default_actors(cpus: list[float], per_actor: float) -> int:
    """As many actors as the nodes hold, while some node keeps room for a decode and a write task."""
    actors = sum(int(c / per_actor + _EPS) for c in cpus)
    while actors > 1 and not _room_to_decode(_placed(cpus, per_actor, actors)):
        actors -= 1
    return max(1, actors)


def plan_pool(cfg: ScoringConfig, nodes: list[dict]) -> Pool:
    """The actor pool for ``cfg`` on a cluster of ``nodes`` (as :func:`ray.nodes` lists them); fails fast with
    :class:`ResourceError` when the cluster cannot host it.

    Defaults follow the nodes, not the cluster's total: an actor never asks for more CPUs or GPUs than the largest
    alive node has, and without ``--actors`` there is one actor per node's worth of CPUs (per GPU slot when
    scoring on GPUs), so every node of a CPU cluster works.
    """
    alive = _node_resources(nodes)
    cpus = [float(r.get("CPU", 0.0)) for r in alive]
    gpus = [float(r.get("GPU", 0.0)) for r in alive]
    total = sum(cpus)
    if cfg.gpus_per_actor > 0:
        gpa = cfg.gpus_per_actor
        slots = sum(int(g / gpa + _EPS) for g in gpus)
        per_actor = cfg.cpus_per_actor if cfg.cpus_per_actor is not None else 1.0
        actors = cfg.actors or max(1, slots)
        while (
            not cfg.actors and actors > 1 and not _room_to_decode(_placed(cpus, per_actor, actors, gpus, gpa))
        ):
            actors -= 1  # GPU slots beyond what the CPUs can feed
        have, per_node, need = sum(gpus), max(gpus, default=0.0), gpa * actors
        if have + _EPS < need or per_node + _EPS < gpa or slots < actors:
            raise ResourceError(
                f"asked for {actors} actor(s) x {gpa:g} GPU = {need:g} GPU, but the Ray cluster "
                f"has {have:g} GPU in total (at most {per_node:g} on one node); lower --actors/--gpus-per-actor, "
                "or use --gpus-per-actor 0 to score on CPUs"
            )
        hosts = [c for c, g in zip(cpus, gpus, strict=True) if g + _EPS >= gpa]
    else:
        per_actor = cfg.cpus_per_actor if cfg.cpus_per_actor is not None else _default_cpus(cpus, cfg.actors)
        actors = cfg.actors or _default_actors(cpus, per_actor)
        hosts = cpus
    largest = max(hosts, default=0.0)
    if per_actor > largest + _EPS:
        raise ResourceError(
            f"an actor of {per_actor:g} CPU fits on no node: the largest alive node has {largest:g} CPU "
            f"({len(cpus)} node(s), {total:g} CPU in all); lower --cpus-per-actor"
        )
    if per_actor * actors > total + _EPS:
        raise ResourceError(
            f"{actors} actor(s) x {per_actor:g} CPU exceed the cluster's {total:g} CPUs; lower --actors"
        )
    if _placed(cpus, per_actor, actors, gpus, max(cfg.gpus_per_actor, 0.0)) is None:
        raise ResourceError(
            f"{actors} actor(s) x {per_actor:g} CPU do not fit on the cluster's nodes "
            f"({', '.join(f'{c:g}' for c in hosts)} CPU); lower --actors or --cpus-per-actor"
        )
    return Pool(actors=actors, cpus_per_actor=per_actor)


def check_resources(cfg: ScoringConfig) -> Pool:
    """Fail fast when the Ray cluster cannot host the actors; returns the pool to start (:func:`plan_pool`)."""
    import ray

    return plan_pool(cfg, ray.nodes())


def unfinished(groups, done: set[str]):
    """The groups whose key is not in ``done``: a manifest's groups stay columnar
    (:meth:`pipeline.scoring.grouping.ManifestGroups.without`), a list of records stays a list."""
    if isinstance(groups, ManifestGroups):
        return groups.without(done)
    return [g for g in map(ReferenceGroup.of, groups) if g.key not in done]


def input_refs(groups) -> list:
    """The groups as Ray Data input blocks (Arrow tables of one row per group, see :func:`input_blocks`), each put
    in the object store as it is built, so the driver never holds more than one block of input rows."""
    import ray

    per_block = -(-len(groups) // input_blocks(len(groups)))
    if isinstance(groups, ManifestGroups):
        tables = groups.tables(per_block)
    else:
        tables = (input_table(groups[i : i + per_block]) for i in range(0, len(groups), per_block))
    return [ray.put(t) for t in tables]


def score_groups(
    groups: ManifestGroups | list[ReferenceGroup | dict],
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
    pool = check_resources(cfg)
    per_actor_cpus = pool.cpus_per_actor
    threads = max(1, math.floor(per_actor_cpus))
    ds = ray.data.from_arrow_refs(input_refs(groups))
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
        compute=ray.data.TaskPoolStrategy(size=decode_concurrency(pool.actors)),
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
        compute=ray.data.ActorPoolStrategy(size=pool.actors),
        batch_size=1,
        batch_format="pyarrow",  # metadata columns pass through untouched; patches are read as zero-copy views
        num_cpus=per_actor_cpus,
        num_gpus=cfg.gpus_per_actor or None,
        zero_copy_batch=True,
    )
    ds = ds.map(
        write_stage,
        fn_kwargs={"output": cfg.output, "run_id": run_id, "codec_table": codec_table},
        num_cpus=WRITE_CPUS,
    )
    summary.actors, summary.cpus_per_actor = pool.actors, per_actor_cpus
    try:
        for row in rows_with_deadline(ds.iter_rows(), cfg.stall_timeout, describe=_cluster_facts):
            summary.groups_done += 1
            summary.images += row["images"]
            summary.pairs += row["pairs"]
            summary.errors += row["errors"]
            summary.checkpoint_sha256 = row["checkpoint_sha256"]
            summary.actor_peak_rss_mb = max(summary.actor_peak_rss_mb, row["peak_rss_mb"])
            if row["failed"]:
                summary.failed_groups.append(row["key"])
    except StalledError:
        raise
    except Exception as e:  # a task or actor failure that no row's input explains: one line naming the cause
        from pipeline.runs.ray_runtime import describe_failure

        raise ScoringFailed(
            f"scoring stopped: {describe_failure(e)}. Finished groups are saved: rerun the same command to resume"
        ) from e
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

    started, started_at = time.perf_counter(), time.time()
    info = model_info(cfg.model)
    patch = int(cfg.patch or info["patch_size"])
    ckpt_id = preflight(cfg)  # before the run's record is written and before Ray starts
    run = Run.open(
        cfg.output,
        kind=kind,
        identity={
            **identity,
            "model": cfg.model,
            "checkpoint": ckpt_id,
            "patch": patch,
            **_metric_identity(cfg),
        },
        prefix="run" if kind == "evaluate" else kind,
        command=cfg.command,
        fields={
            "config": _config_record(cfg, inputs),
            "model": cfg.model,
            "checkpoint_sha256": ckpt_id if ckpt_id != UNTRAINED else None,
            "metrics": _metric_record(cfg),
            **(run_fields or {}),
        },
        registry=registry,
    )
    done = results.finished_groups(cfg.output)  # in the published index, or a part present
    if cfg.retry_errors:
        done -= results.error_groups(cfg.output)
    todo = unfinished(groups, done)
    summary = EvaluateSummary(run_id=run.run_id, output=storage.display(cfg.output), groups_total=len(groups),
                              groups_skipped=len(groups) - len(todo))  # fmt: skip
    if errors:
        if cfg.retry_errors or "input" not in results.table_keys(cfg.output, "errors"):
            results.write_errors(cfg.output, "input", errors, run.run_id)
        summary.errors += len(errors)
    if todo:
        score_groups(todo, cfg, run_id=run.run_id, codec_table=codec_table, patch=patch,
                     min_size=int(info.get("min_size", 32)), summary=summary)  # fmt: skip
    # the parts become a few large files per table, published at once; only buckets with new parts are rewritten
    results.compact(cfg.output, expected_groups=len(groups), orphans_before=started_at)
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
    if summary.actors:  # the pool the last scoring pass used (see plan_pool)
        run.update(pool={"actors": summary.actors, "cpus_per_actor": summary.cpus_per_actor})
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
    summary, _ = run_groups(ManifestGroups(mf), scoring, kind="evaluate", identity=identity,
                            inputs={"manifest": cfg.manifest, "codecs": cfg.codecs}, codec_table=codec_table,
                            errors=mf.errors, registry=registry)  # fmt: skip
    return summary
