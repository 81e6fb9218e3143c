"""The Ray Data stages of a scoring run, as thin adapters around plain cores.

- :func:`load_stage` (CPU tasks) wraps :func:`pipeline.scoring.load.load_group`: it decodes, measures, tiles and
  chooses the pairs;
- :class:`ScoreActor` (actor pool, one model replica each) wraps :meth:`pipeline.scoring.scorer.PairScorer.score`:
  it only encodes and compares;
- :func:`write_stage` (CPU tasks) wraps :func:`pipeline.scoring.results.group_tables` and the group's writes.

Between stages a group is one row of typed columns (:data:`GROUP_COLUMNS`): ``key``, ``ref_id``, ``ref_uri``,
``dists`` and ``errors`` (lists of Arrow structs; only each image's per-manifest ``extras`` is a JSON string),
``pairs`` (an (P, 2) int64 tensor of indices into ``dists``) and ``patches`` (an (1 + N, K, 3, h, w) uint8 tensor;
Ray Data keeps the ragged shapes as its variable-shaped Arrow tensor type and hands the actor a zero-copy view).
A group with nothing to score has zero images of patches, (0, 0, 3, p, p). The actor receives Arrow batches, so
the metadata columns pass through it untouched; it drops ``patches`` and adds its logits and facts.

They run inside Ray workers; :mod:`pipeline.scoring.driver` wires them into one dataset.
"""

from __future__ import annotations

import json
import resource

import numpy as np
import pyarrow as pa

from pipeline.io import storage
from pipeline.io.records import ErrorRow, ReferenceGroup
from pipeline.scoring import grouping, pairing, results
from pipeline.scoring.load import LoadedGroup, MeasuredImage, load_group, no_patches, one_line

GROUP_COLUMNS = ("key", "ref_id", "ref_uri", "dists", "errors", "pairs", "patches", "load_seconds")


def group_row(group: ReferenceGroup | dict) -> dict:
    """The driver's input row of a group (:data:`pipeline.scoring.grouping.INPUT_SCHEMA`): its key and the group
    as typed columns (extras as JSON). A manifest's groups are built as such rows directly, block by block
    (:class:`pipeline.scoring.grouping.ManifestGroups`)."""
    g = ReferenceGroup.of(group)
    return {"key": g.key, "ref_id": g.ref_id, "ref_uri": g.ref_uri,
            "dists": [{**d.to_dict(), "extras": json.dumps(d.extras)} for d in g.dists],
            "explicit_pairs": g.pairs is not None, "pairs_by_id": g.pairs or []}  # fmt: skip


def input_table(groups) -> pa.Table:
    """Input rows of ``groups`` (records or dicts) as one Arrow table of :data:`grouping.INPUT_SCHEMA`."""
    return pa.Table.from_pylist([group_row(g) for g in groups], schema=grouping.INPUT_SCHEMA)


_group_of = grouping.record_of  # an input row back as a record


def loaded_row(loaded: LoadedGroup) -> dict:
    return {
        "key": loaded.key,
        "ref_id": loaded.ref_id,
        "ref_uri": loaded.ref_uri,
        "dists": [d.to_row() for d in loaded.dists],
        "errors": [e.to_dict() for e in loaded.errors],
        "pairs": loaded.pairs,
        "patches": loaded.patches,
        "load_seconds": float(loaded.load_seconds),
    }


def load_stage(row: dict, *, patch: int, min_size: int, max_pixels, allow_roots, pairs: str = "all",
               match_tolerance: float = pairing.DEFAULT_MATCH_TOLERANCE,
               metric_names: tuple[str, ...] | None = None) -> dict:  # fmt: skip
    """Ray ``map`` adapter of :func:`pipeline.scoring.load.load_group`: one input row in, one group row out."""
    group = _group_of(row)
    try:
        loaded = load_group(group, patch=patch, min_size=min_size, max_pixels=max_pixels, allow_roots=allow_roots,
                            pairs=pairs, match_tolerance=match_tolerance, metric_names=metric_names)  # fmt: skip
    except Exception as e:  # the last resort (rows are isolated inside load_group): this group only, recorded
        loaded = LoadedGroup(ref_id=group.ref_id, ref_uri=storage.display(group.ref_uri), key=group.key, dists=[],
                             patches=no_patches(patch))  # fmt: skip
        loaded.errors = [ErrorRow.make("load", "internal", one_line(e), ref_id=group.ref_id, dist_id=d.dist_id,
                                       uri=d.dist_uri) for d in group.dists]  # fmt: skip
    return loaded_row(loaded)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def score_or_fail(scorer, patches: np.ndarray, pairs: np.ndarray, *, ref_id: str, ref_uri: str) -> dict:
    """Score one group, turning a failure into the group's error row; with the actor's peak memory.

    Returns the columns the actor adds: ``logits``, ``n_patches``, ``failed``, ``score_error`` (an error row or
    None) and ``peak_rss_mb``.
    """
    out = {"logits": [], "n_patches": 0, "failed": False, "score_error": None}
    if patches.shape[0] > 0:
        try:
            logits = scorer.score(patches, [(int(i), int(j)) for i, j in pairs])
            out.update(logits=[float(v) for v in logits], n_patches=int(patches.shape[1]))
        except Exception as e:  # e.g. out of device memory: this group fails, is retried on rerun
            out["failed"] = True
            out["score_error"] = ErrorRow.make("score", "scoring_failed", one_line(e), ref_id=ref_id,
                                               uri=ref_uri).to_dict()  # fmt: skip
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def _tensors(batch, name: str) -> list[np.ndarray]:
    """The arrays of a tensor column of an Arrow batch (zero-copy views) or of a dict batch."""
    if isinstance(batch, dict):
        return list(batch[name])
    from ray.data.block import BlockAccessor

    return list(BlockAccessor.for_block(batch.select([name])).to_numpy(name))


class ScoreActor:
    """Ray actor adapter of :class:`pipeline.scoring.scorer.PairScorer`: one model replica, one group per call."""

    def __init__(
        self, *, model: str, checkpoint: str | None, device: str, precision: str, batch_size, threads
    ):
        from pipeline.scoring.scorer import PairScorer

        self.scorer = PairScorer.load(
            model, checkpoint, device=device, precision=precision, batch_size=batch_size, threads=threads
        )

    def __call__(self, batch):
        """An Arrow batch of group rows in, the same rows out without ``patches`` and with the scores added."""
        import pyarrow as pa

        groups = zip(_tensors(batch, "patches"), _tensors(batch, "pairs"), batch.column("ref_id").to_pylist(),
                     batch.column("ref_uri").to_pylist(), strict=True)  # fmt: skip
        scored = [score_or_fail(self.scorer, p, q, ref_id=r, ref_uri=u) for p, q, r, u in groups]
        n = batch.num_rows
        out = batch.drop_columns(["patches"])
        if any(s["failed"] for s in scored):
            errors = out.column("errors").to_pylist()
            errors = [
                e + ([s["score_error"]] if s["score_error"] else [])
                for e, s in zip(errors, scored, strict=True)
            ]
            out = out.set_column(out.schema.get_field_index("errors"), "errors", pa.array(errors))
        columns = {
            "logits": pa.array([s["logits"] for s in scored], pa.list_(pa.float64())),
            "n_patches": pa.array([s["n_patches"] for s in scored], pa.int64()),
            "failed": pa.array([s["failed"] for s in scored], pa.bool_()),
            "model": pa.array([self.scorer.model_name] * n, pa.string()),
            "checkpoint_sha256": pa.array([self.scorer.checkpoint_sha256] * n, pa.string()),
            "device": pa.array([str(self.scorer.device)] * n, pa.string()),
            "peak_rss_mb": pa.array([s["peak_rss_mb"] for s in scored], pa.float64()),
        }
        for name, values in columns.items():
            out = out.append_column(name, values)
        return out


def scored_group(row: dict) -> results.ScoredGroup:
    """A scored group row (after the actor) as a :class:`pipeline.scoring.results.ScoredGroup`."""
    return results.ScoredGroup(
        ref_id=row["ref_id"],
        ref_uri=row["ref_uri"],
        key=row["key"],
        dists=[MeasuredImage.from_row(d) for d in row["dists"]],
        errors=[ErrorRow.from_dict(e) for e in row["errors"]],
        pairs=[(int(i), int(j)) for i, j in np.asarray(row["pairs"]).reshape(-1, 2)],
        logits=np.asarray(row["logits"], dtype=np.float64),
        model=row["model"],
        checkpoint_sha256=row["checkpoint_sha256"],
        device=row["device"],
        n_patches=int(row["n_patches"]),
        failed=bool(row["failed"]),
        peak_rss_mb=float(row["peak_rss_mb"]),
    )


def write_stage(row: dict, *, output: str, run_id: str, codec_table) -> dict:
    """Ray ``map`` adapter of :func:`pipeline.scoring.results.write_group`; returns the group's counts."""
    scored = scored_group(row)
    if scored.failed:  # nothing but the errors is written: the group is not finished, a rerun scores it again
        scored.pairs, scored.logits = [], np.zeros(0)
    tables = results.group_tables(scored, run_id=run_id, codec_table=codec_table)
    if scored.failed:
        results.write_errors(output, scored.key, scored.errors, run_id)
    else:
        results.write_group(output, scored.key, tables)
    return {
        "key": scored.key,
        "images": 0 if scored.failed else tables["images"].num_rows,
        "pairs": 0 if scored.failed else tables["pairs"].num_rows,
        "errors": tables["errors"].num_rows,
        "failed": scored.failed,
        "checkpoint_sha256": scored.checkpoint_sha256,
        "device": scored.device,
        "peak_rss_mb": scored.peak_rss_mb,
    }
