"""Read-only DuckDB views over results folders: the statement guard, views over several folders, no file access."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import sql
from pipeline.io import schemas
from pipeline.runs import registry as runs
from pipeline.scoring import results


def write_folder(base, run_id: str, *, extra: dict | None = None, psnr_shift: float = 0.0) -> str:
    """A results folder written by the results module: two groups, one with an extra carried column."""
    out = str(base / run_id)
    for g, ref in enumerate(["r1", "r2"]):
        rows = []
        for k, codec in enumerate(["jpeg", "webp"]):
            row = {
                "run_id": run_id,
                "ref_id": ref,
                "dist_id": f"{ref}-{codec}",
                "codec": codec,
                "setting": "q=1",
                "bpp": 0.5 + k + g,
                "psnr": 30.0 + k + 2 * g + psnr_shift,
                "ms_ssim": None,
            }
            if extra and g == 1:
                row.update(extra)
            rows.append(row)
        pairs = [
            {
                "run_id": run_id,
                "ref_id": ref,
                "a_id": f"{ref}-jpeg",
                "b_id": f"{ref}-webp",
                "p_a": 0.25 + g / 2,
            }
        ]
        results.write_group(
            out,
            f"g-{g}",
            {
                "images": schemas.conform(rows, schemas.IMAGES),
                "pairs": schemas.conform(pairs, schemas.PAIRS),
                "errors": schemas.conform([], schemas.ERRORS),
            },
        )
    results.compact(out)  # as a finished run leaves it: one compacted file per table
    results.write_run(
        out,
        {
            "run_id": run_id,
            "started_at": f"2026-01-0{len(run_id) % 9 + 1}T00:00:00+00:00",
            "status": "finished",
            "counts": {"images": 4},
            "config": {"manifest": "/m.csv"},
        },
    )
    return out


def rows(con, query: str) -> pd.DataFrame:
    return sql.execute(con, query).read_all().to_pandas()


ALLOWED = [
    "SELECT 1",
    "select count(*) from images",
    "WITH t AS (SELECT * FROM pairs) SELECT * FROM t",
    "FROM images",
    "DESCRIBE images",
    "SHOW TABLES",
    "SUMMARIZE images",
    "EXPLAIN SELECT * FROM images",
    "  explain analyze select 1  ",
    "VALUES (1, 2)",
    "SELECT 1;",
]

REFUSED = [
    ("COPY images TO '/tmp/x.csv'", "COPY"),
    ("ATTACH 'x.db' AS x", "ATTACH"),
    ("DETACH x", "DETACH"),
    ("INSTALL httpfs", "LOAD"),
    ("LOAD httpfs", "LOAD"),
    ("CREATE TABLE t AS SELECT 1", "CREATE"),
    ("CREATE VIEW v AS SELECT 1", "CREATE"),
    ("CREATE SECRET s (TYPE s3)", "CREATE"),
    ("INSERT INTO images SELECT * FROM images", "INSERT"),
    ("UPDATE images SET psnr = 0", "UPDATE"),
    ("DELETE FROM images", "DELETE"),
    ("DROP VIEW images", "DROP"),
    ("PRAGMA version", "PRAGMA"),
    ("SET enable_external_access = true", "SET"),
    ("RESET lock_configuration", "SET"),
    ("EXPORT DATABASE '/tmp/db'", "EXPORT"),
    ("CALL pragma_version()", "CALL"),
    ("CHECKPOINT", "CALL"),
    ("USE memory", "SET"),
    ("SELECT 1; COPY images TO 'x.csv'", "one statement at a time"),
    ("EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'", "COPY"),
    ("/* hidden */ EXPLAIN COPY (SELECT 1) TO 'x.csv'", "EXPLAIN must start"),
    ("", "no SQL statement"),
]


@pytest.mark.parametrize("query", ALLOWED)
def test_queries_pass_the_guard(query):
    sql.check_read_only(query)


@pytest.mark.parametrize(("query", "why"), REFUSED)
def test_writes_attaches_and_configuration_are_refused(query, why):
    with pytest.raises(sql.ReadOnlyError, match=why):
        sql.check_read_only(query)


def test_unparsable_sql_is_a_query_error():
    with pytest.raises(sql.QueryError, match="does not parse"):
        sql.check_read_only("SELEC 1")


def test_views_over_several_folders_equal_pandas(tmp_path):
    a = write_folder(tmp_path, "run-a")
    b = write_folder(tmp_path, "run-bb", extra={"team": "t1"}, psnr_shift=1.5)
    con = sql.connect([a, b])
    got = rows(
        con, "SELECT run_id, codec, avg(psnr) AS psnr, count(*) AS n FROM images GROUP BY ALL ORDER BY ALL"
    )
    files = [
        os.path.join(f, "images", n) for f in (a, b) for n in sorted(os.listdir(os.path.join(f, "images")))
    ]
    df = pd.concat([pq.read_table(f).to_pandas() for f in files])
    want = df.groupby(["run_id", "codec"]).agg(psnr=("psnr", "mean"), n=("psnr", "size")).reset_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # a column carried by only some files: null elsewhere, declared columns first
    cols = rows(con, "DESCRIBE images")["column_name"].tolist()
    assert cols[: len(schemas.IMAGES)] == schemas.IMAGES.names and cols[-1] == "team"
    assert rows(con, "SELECT count(team) AS n FROM images")["n"][0] == 2
    # every view is queryable, errors is empty with its declared columns
    assert rows(con, "SELECT count(*) AS n FROM pairs")["n"][0] == 4
    assert rows(con, "SELECT * FROM errors").columns.tolist() == schemas.ERRORS.names
    runs_df = rows(con, "SELECT run_id, kind, status, counts_images, manifest FROM runs ORDER BY run_id")
    assert runs_df.to_dict("records") == [
        {
            "run_id": "run-a",
            "kind": "evaluate",
            "status": "finished",
            "counts_images": 4,
            "manifest": "/m.csv",
        },
        {
            "run_id": "run-bb",
            "kind": "evaluate",
            "status": "finished",
            "counts_images": 4,
            "manifest": "/m.csv",
        },
    ]


def test_the_connection_cannot_reach_files(tmp_path):
    a = write_folder(tmp_path, "run-a")
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n1\n")
    con = sql.connect([a])
    some_file = os.path.join(a, "images", os.listdir(os.path.join(a, "images"))[0])
    for query in (
        f"SELECT * FROM read_csv('{secret}')",
        f"SELECT * FROM read_parquet('{some_file}')",
        f"SELECT * FROM glob('{tmp_path}/*')",
    ):
        with pytest.raises(sql.QueryError, match=r"disabled by configuration|Permission"):
            rows(con, query)
    # the guard comes first; and even a raw statement could not reopen access: the configuration is locked
    with pytest.raises(Exception, match="locked"):
        con.execute("SET enable_external_access = true")


def test_runs_view_from_the_registry(tmp_path):
    a = write_folder(tmp_path, "run-a")
    root = str(tmp_path / "registry")
    runs.append(root, results.read_run(a), results_uri=a)
    runs.append(
        root,
        {
            "run_id": "regress-1",
            "kind": "regress",
            "verdict": "pass",
            "status": "finished",
            "started_at": "2026-02-01T00:00:00+00:00",
            "finished_at": "2026-02-01T00:01:00+00:00",
            "baseline": {"uri": a, "run_id": "run-a"},
            "candidate": {"uri": "s3://u:pw@b/c", "run_id": "c"},
            "counts": {"matched": 8, "regressions": 0},
        },
        results_uri=str(tmp_path / "reg"),
    )
    runs.append(root, results.read_run(a), results_uri=a)  # recorded again: still one row
    con = sql.connect([], registry=root)
    df = rows(
        con, "SELECT run_id, kind, verdict, counts_matched, candidate_uri FROM runs ORDER BY started_at"
    )
    assert df["run_id"].tolist() == ["run-a", "regress-1"]
    assert df.iloc[1].to_dict() == {
        "run_id": "regress-1",
        "kind": "regress",
        "verdict": "pass",
        "counts_matched": 8,
        "candidate_uri": "s3://b/c",
    }
    assert runs.last_good_baseline(runs.read(root))["uri"] == "s3://b/c"
    with pytest.raises(sql.QueryError, match="holds no runs"):
        sql.connect([], registry=str(tmp_path / "empty"))
    with pytest.raises(sql.QueryError, match="not a results folder"):
        sql.connect([str(tmp_path / "nothing")])
