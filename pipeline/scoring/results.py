"""The results folder: rows of a scored group, codec-metadata joins, idempotent Parquet writes, reading back.

Layout (docs/architecture.md, "Results folder layout"): while a run goes, ``images/``, ``pairs/`` and ``errors/``
get one part per reference group, ``<table>/_parts/<key>.parquet``; writing a group is idempotent (its parts always
have the same names, so a rerun overwrites instead of duplicating) and ``images/_parts/<key>.parquet`` is written
last and marks the group finished. When the run ends the parts are compacted into a few large files per table,
published by the index ``_tables.json`` (:mod:`pipeline.scoring.compaction`). Every reader goes through
:func:`dataset` / :func:`read_table`, which read the index's files, or the per-group files of folders without one.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from pipeline.io import schemas, storage
from pipeline.io.records import ErrorRow
from pipeline.io.tables import parquet_bytes
from pipeline.runs import lifecycle
from pipeline.scoring import compaction
from pipeline.scoring.load import LoadedGroup, MeasuredImage

TABLES = {"images": schemas.IMAGES, "pairs": schemas.PAIRS, "errors": schemas.ERRORS}
CODEC_KEYS = ("codec", "codec_version")
DECLARED_METRICS = ("psnr", "psnr_y", "ms_ssim")  # metric columns of every images table (schemas.IMAGES)


@dataclass
class ScoredGroup:
    """A reference group after scoring: its usable images, error rows, the scored pairs and their logits."""

    ref_id: str
    ref_uri: str
    key: str
    dists: list[MeasuredImage]
    errors: list[ErrorRow] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)  # (i, j) into dists
    logits: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float64))  # one per pair
    model: str = ""
    checkpoint_sha256: str | None = None
    device: str = ""
    n_patches: int = 0
    failed: bool = False  # scoring failed: only the errors are written, the group is retried on rerun
    peak_rss_mb: float = 0.0

    @classmethod
    def from_loaded(cls, loaded: LoadedGroup, logits: np.ndarray, **facts) -> ScoredGroup:
        """A loaded group with the logits of its pairs (``facts``: model, checkpoint_sha256, device, ...)."""
        return cls(ref_id=loaded.ref_id, ref_uri=loaded.ref_uri, key=loaded.key, dists=loaded.dists,
                   errors=loaded.errors, pairs=loaded.pair_list(), logits=np.asarray(logits, dtype=np.float64),
                   n_patches=loaded.n_patches, **facts)  # fmt: skip


def group_tables(
    scored: ScoredGroup, *, run_id: str, codec_table: pd.DataFrame | None = None
) -> dict[str, pa.Table]:
    """The images, pairs and errors tables of one scored group (declared schemas, joined codec metadata)."""
    from pipeline.stats import bradley_terry

    dists = scored.dists
    logits = np.asarray(scored.logits, dtype=np.float64)
    p = 1.0 / (1.0 + np.exp(-logits))
    pair_rows = []
    for (i, j), logit, p_a in zip(scored.pairs, logits, p, strict=True):
        a, b = dists[i], dists[j]
        pair_rows.append(
            {
                "run_id": run_id,
                "ref_id": scored.ref_id,
                "a_id": a.dist_id,
                "b_id": b.dist_id,
                "p_a": float(p_a),
                "logit": float(logit),
                "model": scored.model,
                "checkpoint_sha256": scored.checkpoint_sha256,
                "n_patches": scored.n_patches,
                "a_codec": a.codec,
                "b_codec": b.codec,
                "a_setting": a.setting,
                "b_setting": b.setting,
                "a_bpp": a.bpp,
                "b_bpp": b.bpp,
                "a_codec_version": a.codec_version,
                "b_codec_version": b.codec_version,
            }
        )
    scores: dict[str, float] = {}
    win_rates: dict[str, float] = {}
    counts: dict[str, int] = {}
    if pair_rows:
        ids = [d.dist_id for d in dists]
        fit = bradley_terry.fit([r["a_id"] for r in pair_rows], [r["b_id"] for r in pair_rows], p, items=ids)
        scores = dict(zip(fit.items, map(float, fit.scores), strict=True))
        win_rates = dict(zip(fit.items, map(float, fit.win_rate), strict=True))
        counts = dict(zip(fit.items, map(int, fit.n_comparisons), strict=True))
    image_rows = []
    for d in dists:
        row = {
            "run_id": run_id,
            "ref_id": scored.ref_id,
            "dist_id": d.dist_id,
            "ref_uri": scored.ref_uri,
            "dist_uri": d.dist_uri,
            "codec": d.codec,
            "codec_version": d.codec_version,
            "setting": d.setting,
            "bytes": d.bytes,
            "width": d.width,
            "height": d.height,
            "bpp": d.bpp,
            **{name: d.metrics.get(name) for name in DECLARED_METRICS},
            "prf_score": scores.get(d.dist_id) if counts.get(d.dist_id) else None,
            "prf_win_rate": win_rates.get(d.dist_id) if counts.get(d.dist_id) else None,
            "n_pairs": counts.get(d.dist_id, 0),
            "conversions": d.conversions or "",
            "ref_conversions": d.ref_conversions or "",
        }
        row.update({k: v for k, v in d.metrics.items() if k not in row})  # the selected metrics beyond those
        row.update({k: v for k, v in (d.extras or {}).items() if k not in row})
        image_rows.append(row)
    error_rows = [e.to_dict(run_id) for e in scored.errors]
    metric_names = list(dict.fromkeys(name for d in dists for name in d.metrics))
    images_t = schemas.conform(image_rows, schemas.images_schema(metric_names))
    pairs_t = schemas.conform(pair_rows, schemas.PAIRS)
    if codec_table is not None and len(codec_table):
        images_t = join_codecs(images_t, codec_table)
        pairs_t = join_codecs(pairs_t, codec_table, prefixes=("a_", "b_"))
    return {"images": images_t, "pairs": pairs_t, "errors": schemas.conform(error_rows, schemas.ERRORS)}


def join_codecs(table: pa.Table, codecs: pd.DataFrame, prefixes: tuple[str, ...] = ("",)) -> pa.Table:
    """Left-join codec metadata on (codec, codec_version); for pairs once per side with ``a_``/``b_`` prefixes."""
    df = table.to_pandas()
    n = len(df)
    value_cols = [c for c in codecs.columns if c not in CODEC_KEYS]
    lookup = {(r["codec"], r["codec_version"]): r for r in codecs.to_dict("records")}
    for prefix in prefixes:
        keys = list(zip(df[f"{prefix}codec"], df[f"{prefix}codec_version"], strict=True)) if n else []
        for col in value_cols:
            name = f"{prefix}{col}"
            if name in df.columns:
                name = f"{prefix}codec_{col}"
            df[name] = [lookup.get(k, {}).get(col) for k in keys]
    out = schemas.conform(pa.Table.from_pandas(df, preserve_index=False), _declared(table))
    # a column of nulls (e.g. a metric null on every image) keeps its type through pandas
    for f in table.schema:
        i = out.schema.get_field_index(f.name)
        if i >= 0 and pa.types.is_null(out.schema.field(i).type) and not pa.types.is_null(f.type):
            out = out.set_column(i, f, pa.nulls(out.num_rows, f.type))
    return out


def _declared(table: pa.Table) -> pa.Schema:
    for schema in TABLES.values():
        if table.schema.names[: len(schema)] == schema.names:
            return schema
    return table.schema


def write_group(output: str, key: str, tables: dict[str, pa.Table]) -> None:
    """Write one group's parts: errors and pairs first, images last (its presence marks the group finished)."""
    for name in ("errors", "pairs", "images"):
        table = tables[name]
        uri = compaction.part_uri(output, name, key)
        if name == "errors" and table.num_rows == 0:
            # a stale errors part of an earlier attempt at this group (and its file in the per-group layout)
            compaction.remove([uri, storage.join(output, name, f"{key}.parquet")])
            continue
        storage.write_bytes(uri, parquet_bytes(table))


def finished_groups(output: str) -> set[str]:
    """Keys of the groups whose results are complete in ``output``: in the index, or an images part present."""
    index = compaction.read_index(output)
    return compaction.index_keys(index, "images") | set(compaction.list_parts(output, "images", index)[0])


def error_groups(output: str) -> set[str]:
    """Keys of the groups (and other error units, e.g. ``input``) that recorded error rows in ``output``."""
    index = compaction.read_index(output)
    parts = compaction.list_parts(output, "errors", index)[0]
    return compaction.index_keys(index, "errors", with_rows=True) | set(parts)


def table_keys(output: str, name: str) -> set[str]:
    """Keys whose rows ``name`` holds: published in the index or waiting in a part."""
    index = compaction.read_index(output)
    return compaction.index_keys(index, name) | set(compaction.list_parts(output, name, index)[0])


def compact(output: str, *, expected_groups: int | None = None, orphans_before: float | None = None) -> bool:
    """Fold the run's per-group parts into its compacted tables (:func:`pipeline.scoring.compaction.compact`)."""
    return compaction.compact(output, expected_groups=expected_groups, orphans_before=orphans_before)


def write_errors(output: str, name: str, rows: list[dict | ErrorRow], run_id: str) -> None:
    """Errors that belong to no group (e.g. manifest rows), as one part named ``name``."""
    if rows:
        dicts = [r.to_dict(run_id) if isinstance(r, ErrorRow) else {"run_id": run_id, **r} for r in rows]
        table = schemas.conform(dicts, schemas.ERRORS)
        storage.write_bytes(compaction.part_uri(output, "errors", name), parquet_bytes(table))


def replace_errors(output: str, name: str, rows: list[dict | ErrorRow], run_id: str) -> None:
    """Make ``name``'s error rows exactly ``rows`` in a finished output, and publish (compact) the change."""
    if rows:
        write_errors(output, name, rows, run_id)
    else:
        compaction.remove(
            [compaction.part_uri(output, "errors", name), storage.join(output, "errors", f"{name}.parquet")]
        )
    compaction.compact(output, drop=frozenset() if rows else {name})


def table_files(results: str, name: str) -> list[str]:
    """The Parquet files a reader of table ``name`` reads (:func:`pipeline.scoring.compaction.table_files`)."""
    return compaction.table_files(results, name)


def has_results(output: str) -> bool:
    """Whether ``output`` holds a results table (an index, or per-group files of images)."""
    return storage.exists(compaction.index_uri(output)) or bool(compaction.table_files(output, "images"))


def _schemas(uris: list[str]) -> list[pa.Schema]:
    """Footer schemas of ``uris`` (read concurrently: on an object store each is a round trip)."""
    if not uris:
        return []
    fs, _ = storage.arrow_filesystem(uris[0])
    paths = [storage.arrow_filesystem(u)[1] for u in uris]
    with ThreadPoolExecutor(max_workers=min(16, len(paths))) as pool:
        return list(pool.map(lambda p: pq.read_schema(p, filesystem=fs), paths))


def unified_schema(declared: pa.Schema, uris: list[str]) -> pa.Schema:
    """One schema over the files ``uris``: declared columns first, the others after, null-typed ones promoted.
    Raises ``pa.ArrowInvalid``/``pa.ArrowTypeError`` when files disagree on a column's type."""
    unified = pa.unify_schemas([declared, *_schemas(uris)], promote_options="permissive")
    names = [*declared.names, *[n for n in unified.names if n not in declared.names]]
    return pa.schema([unified.field(n) for n in names])


def files_dataset(uris: list[str], schema: pa.Schema) -> ds.Dataset:
    """A lazy dataset over Parquet files of one folder (one filesystem), read with ``schema``."""
    if not uris:
        return ds.dataset(schema.empty_table())
    fs, _ = storage.arrow_filesystem(uris[0])
    return ds.dataset(
        [storage.arrow_filesystem(u)[1] for u in uris], schema=schema, format="parquet", filesystem=fs
    )


def dataset(results: str, name: str, declared: pa.Schema | None = None) -> ds.Dataset:
    """Table ``name`` of a results folder as one lazy pyarrow dataset: the index's compacted files when
    published, else the per-group files (:func:`pipeline.scoring.compaction.table_files`)."""
    declared = declared if declared is not None else TABLES[name]
    uris = compaction.table_files(results, name)
    return files_dataset(uris, unified_schema(declared, uris))


def read_table(results: str, name: str) -> pd.DataFrame:
    """A results table (``images``, ``pairs`` or ``errors``) as pandas, with its declared columns present."""
    return dataset(results, name).to_table().to_pandas()


def count_rows(results: str, name: str) -> int:
    """Rows of a results table: from the index when published, else from the Parquet footers only."""
    index = compaction.read_index(results)
    if index is not None:
        return sum(f["rows"] for f in compaction.table_entry(index, name)["files"])
    total = 0
    for uri in compaction.table_files(results, name):
        fs, path = storage.filesystem(uri)
        with fs.open(path, "rb") as f:
            total += pq.ParquetFile(f).metadata.num_rows
    return total


def read_run(results: str) -> dict | None:
    """The folder's ``run.json`` (the run lifecycle's record), or None."""
    return lifecycle.read_record(results)


def write_run(results: str, run: dict) -> None:
    """Write the folder's ``run.json`` as the run lifecycle writes it (for tools and tests that build folders)."""
    lifecycle.write_record(results, run)
