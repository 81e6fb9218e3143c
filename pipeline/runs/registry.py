"""The runs registry: one row per `evaluate` or `regress` run, so runs can be listed over time.

Layout: ``<root>/runs/<run_id>.parquet``, one single-row Parquet file per run with the declared :data:`RUNS`
schema. Appending a run writes its own file, so recording the same run again (a resumed run) overwrites that row
instead of duplicating it, and concurrent runs never write to the same object.

The root comes from ``--registry URI`` or the ``PRFEVAL_REGISTRY`` environment variable; when neither is set
nothing is recorded. A record holds the facts of the run's ``run.json`` (counts flattened into ``counts_*``
columns, the whole dict again as JSON in ``counts_json``, library versions as a JSON string) and never any
credentials: URIs are shown without embedded user/password and every text is passed through
:func:`pipeline.io.storage.redact`.

"The last good baseline" (:func:`last_good_baseline`) is the candidate of the most recent finished ``regress``
run whose verdict was ``pass``: that results folder is what the next night compares against.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import logging
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.io import schemas, storage

log = logging.getLogger(__name__)

ENV_VAR = "PRFEVAL_REGISTRY"
KINDS = ("evaluate", "regress")
VERDICT_PASS = "pass"
VERDICT_REGRESSION = "regression"

# counts of run.json copied into their own columns (the rest stays in counts_json)
COUNT_COLUMNS = {
    "groups": pa.int64(),
    "groups_failed_last": pa.int64(),
    "images": pa.int64(),
    "pairs": pa.int64(),
    "errors": pa.int64(),
    "matched": pa.int64(),
    "only_baseline": pa.int64(),
    "only_candidate": pa.int64(),
    "ref_mismatch": pa.int64(),
    "regressions": pa.int64(),
    "seconds_last": pa.float64(),
}

_TS = pa.timestamp("s", tz="UTC")

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("kind", pa.string()),
        ("started_at", _TS),
        ("finished_at", _TS),
        ("status", pa.string()),
        ("results_uri", pa.string()),
        ("manifest", pa.string()),
        ("model", pa.string()),
        ("checkpoint_sha256", pa.string()),
        *[(f"counts_{k}", t) for k, t in COUNT_COLUMNS.items()],
        ("counts_json", pa.string()),
        ("verdict", pa.string()),
        ("baseline_uri", pa.string()),
        ("candidate_uri", pa.string()),
        ("baseline_run_id", pa.string()),
        ("candidate_run_id", pa.string()),
        ("versions", pa.string()),
        ("git_commit", pa.string()),
        ("command", pa.string()),
        ("recorded_at", _TS),
    ]
)


def registry_root(explicit: str | None = None) -> str | None:
    """The registry root: ``explicit`` (``--registry``), else ``$PRFEVAL_REGISTRY``, else None (no registry)."""
    return explicit or os.environ.get(ENV_VAR) or None


def _ts(value) -> _dt.datetime | None:
    if not value:
        return None
    try:
        t = _dt.datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


def _text(value) -> str | None:
    return None if value is None else storage.redact(storage.display(str(value)))


def record_from_run(run: dict, *, results_uri: str) -> dict:
    """The registry row of a ``run.json`` dict (evaluate's, or regress's with its ``kind``/``verdict`` keys)."""
    counts = run.get("counts") or {}
    config = run.get("config") or {}
    baseline, candidate = run.get("baseline") or {}, run.get("candidate") or {}
    row = {
        "run_id": run.get("run_id"),
        "kind": run.get("kind") or "evaluate",
        "started_at": _ts(run.get("started_at")),
        "finished_at": _ts(run.get("finished_at")),
        "status": run.get("status"),
        "results_uri": _text(results_uri),
        "manifest": _text(config.get("manifest")) if run.get("kind", "evaluate") == "evaluate" else None,
        "model": run.get("model"),
        "checkpoint_sha256": run.get("checkpoint_sha256"),
        "counts_json": json.dumps(counts, sort_keys=True),
        "verdict": run.get("verdict"),
        "baseline_uri": _text(baseline.get("uri")),
        "candidate_uri": _text(candidate.get("uri")),
        "baseline_run_id": baseline.get("run_id"),
        "candidate_run_id": candidate.get("run_id"),
        "versions": json.dumps(run.get("versions") or {}, sort_keys=True),
        "git_commit": run.get("git_commit"),
        "command": _text(run.get("command")),
        "recorded_at": _dt.datetime.now(_dt.UTC).replace(microsecond=0),
    }
    for key, typ in COUNT_COLUMNS.items():
        value = counts.get(key)
        row[f"counts_{key}"] = (
            None if value is None else (float(value) if pa.types.is_floating(typ) else int(value))
        )
    return row


def to_table(rows: list[dict]) -> pa.Table:
    """Registry rows as a table of the declared schema."""
    return schemas.conform(rows, RUNS, keep_extras=False) if rows else RUNS.empty_table()


def append(root: str, run: dict, *, results_uri: str) -> str:
    """Record ``run`` (a run.json dict) under ``root``; returns the URI written. Idempotent per run id."""
    if not run.get("run_id"):
        raise ValueError("a run without run_id cannot be recorded")
    table = to_table([record_from_run(run, results_uri=results_uri)])
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    uri = storage.join(root, "runs", f"{run['run_id']}.parquet")
    storage.write_bytes(uri, buf.getvalue())
    return uri


def record(root: str | None, run: dict, *, results_uri: str) -> str | None:
    """Append ``run`` to the registry at ``root`` (``--registry`` or ``$PRFEVAL_REGISTRY``), if there is one.

    A registry that cannot be written is reported as a warning: the run itself has succeeded and its results stay
    valid, so this never changes the command's outcome.
    """
    root = registry_root(root)
    if not root:
        return None
    try:
        return append(root, run, results_uri=results_uri)
    except OSError as e:
        log.warning(
            "could not record run %s in the registry %s: %s",
            run.get("run_id"),
            storage.display(root),
            storage.redact(str(e)),
        )
        return None


def files(root: str) -> list[str]:
    """URIs of the registry's per-run files."""
    return storage.listdir(storage.join(root, "runs"), ".parquet")


def read(root: str) -> pd.DataFrame:
    """The whole registry as pandas, oldest run first (empty, with the declared columns, when there is none)."""
    uris = files(root)
    if not uris:
        return RUNS.empty_table().to_pandas()
    fs, _ = storage.arrow_filesystem(uris[0])
    tables = [
        schemas.conform(pq.read_table(storage.arrow_filesystem(u)[1], filesystem=fs), RUNS, keep_extras=False)
        for u in uris
    ]
    df = pa.concat_tables(tables).to_pandas()
    return df.sort_values(["started_at", "run_id"], kind="stable", na_position="first").reset_index(drop=True)


def last_good_baseline(runs: pd.DataFrame) -> dict | None:
    """The candidate of the most recent finished regress run with verdict ``pass``, or None when there is none.

    Returns ``{"uri", "run_id", "regress_run_id", "finished_at"}``.
    """
    good = runs[
        (runs["kind"] == "regress") & (runs["verdict"] == VERDICT_PASS) & (runs["status"] == "finished")
    ]
    good = good[good["candidate_uri"].notna()]
    if good.empty:
        return None
    last = good.sort_values(["finished_at", "run_id"], kind="stable").iloc[-1]
    return {
        "uri": last["candidate_uri"],
        "run_id": last["candidate_run_id"],
        "regress_run_id": last["run_id"],
        "finished_at": str(last["finished_at"]),
    }


__all__ = [
    "ENV_VAR",
    "RUNS",
    "append",
    "last_good_baseline",
    "read",
    "record",
    "record_from_run",
    "registry_root",
    "to_table",
]
