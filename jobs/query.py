"""`prfeval query`: read-only DuckDB SQL over results folders (views ``images``, ``pairs``, ``errors``, ``runs``).

See :mod:`pipeline.sql` for how the views are registered and why a query can neither write nor reach files.
Output: ``--format table`` (default, for a terminal; at most ``--max-rows`` rows), ``csv``, ``json`` (an array of
records) or ``parquet`` (needs ``--out``); ``--out URI`` writes the result there (local or s3://) instead of
stdout. Built-in examples (``--example NAME``) are listed in ``--help``.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap

import pyarrow as pa

from jobs.common import EXIT_OK, ArgumentParser, UsageError, command
from pipeline.io import storage, tables
from pipeline.runs import registry as runs

FORMATS = ("table", "csv", "json", "parquet")

# name -> (what it answers, SQL). Each runs against any results folder (tests run every one).
EXAMPLES: dict[str, tuple[str, str]] = {
    "top-codecs": (
        "the three best codecs by mean PRFNet score in each 0.5-bpp bucket",
        """
        WITH per AS (
          SELECT floor(bpp / 0.5) * 0.5 AS bpp_bucket, codec, count(*) AS images,
                 avg(prf_score) AS prf_score, avg(psnr) AS psnr, avg(ms_ssim) AS ms_ssim
          FROM images WHERE bpp IS NOT NULL GROUP BY ALL)
        SELECT * FROM per
        QUALIFY row_number() OVER (PARTITION BY bpp_bucket ORDER BY prf_score DESC, codec) <= 3
        ORDER BY bpp_bucket, prf_score DESC, codec
        """,
    ),
    "worst-images": (
        "the ten images of codec 'jpeg' PRFNet likes least within their reference (change the codec to taste)",
        """
        SELECT run_id, ref_id, dist_id, setting, bpp, psnr, ms_ssim, prf_win_rate
        FROM images WHERE codec = 'jpeg'
        ORDER BY prf_win_rate ASC NULLS LAST, psnr ASC, dist_id, run_id LIMIT 10
        """,
    ),
    "run-deltas": (
        "run-over-run changes per codec and setting (query several --results, or the registry's runs)",
        """
        WITH per_run AS (
          SELECT i.run_id, any_value(r.started_at) AS started_at, i.codec, i.setting,
                 avg(i.bpp) AS bpp, avg(i.psnr) AS psnr, avg(i.ms_ssim) AS ms_ssim, avg(i.prf_score) AS prf_score
          FROM images i LEFT JOIN runs r USING (run_id) GROUP BY i.run_id, i.codec, i.setting),
        deltas AS (
          SELECT codec, setting, run_id, lag(run_id) OVER w AS previous_run,
                 bpp / lag(bpp) OVER w - 1 AS bpp_change, psnr - lag(psnr) OVER w AS d_psnr,
                 ms_ssim - lag(ms_ssim) OVER w AS d_ms_ssim
          FROM per_run WINDOW w AS (PARTITION BY codec, setting ORDER BY started_at, run_id))
        SELECT * FROM deltas WHERE previous_run IS NOT NULL ORDER BY d_psnr, codec, setting
        """,
    ),
    "disagreements": (
        "pairs where PRFNet and PSNR disagree most",
        """
        SELECT p.run_id, p.ref_id, p.a_id, p.b_id, p.p_a, a.psnr - b.psnr AS psnr_a_minus_b
        FROM pairs p
        JOIN images a ON a.run_id = p.run_id AND a.dist_id = p.a_id
        JOIN images b ON b.run_id = p.run_id AND b.dist_id = p.b_id
        WHERE (p.p_a - 0.5) * (a.psnr - b.psnr) < 0
        ORDER BY abs(p.p_a - 0.5) * abs(a.psnr - b.psnr) DESC, p.a_id, p.b_id, p.run_id LIMIT 20
        """,
    ),
    "speed": (
        "per codec: median encode and decode megapixels per second (from a sweep's timing; NULL without) and bpp",
        """
        WITH timed AS (
          SELECT codec, bpp,
                 try_cast(to_json(i) ->> 'encode_mp_per_s' AS DOUBLE) AS encode_mp_per_s,
                 try_cast(to_json(i) ->> 'decode_mp_per_s' AS DOUBLE) AS decode_mp_per_s
          FROM images i)
        SELECT codec, count(*) AS images, median(encode_mp_per_s) AS encode_mp_per_s,
               median(decode_mp_per_s) AS decode_mp_per_s, median(bpp) AS median_bpp, avg(bpp) AS mean_bpp
        FROM timed GROUP BY codec ORDER BY encode_mp_per_s DESC NULLS LAST, codec
        """,
    ),
    "runs": (
        "runs over time, newest first",
        """
        SELECT run_id, kind, started_at, status, verdict, counts_images, counts_pairs, counts_errors, results_uri
        FROM runs ORDER BY started_at DESC, run_id DESC
        """,
    ),
    "last-good": (
        "the last good baseline: the candidate of the latest passing regress run (needs --registry)",
        """
        SELECT candidate_uri AS baseline_uri, candidate_run_id AS baseline_run_id, run_id AS passed_in, finished_at
        FROM runs WHERE kind = 'regress' AND verdict = 'pass' AND status = 'finished'
        ORDER BY finished_at DESC, run_id DESC LIMIT 1
        """,
    ),
}


def example_sql(name: str) -> str:
    return textwrap.dedent(EXAMPLES[name][1]).strip()


def _epilog() -> str:
    lines = [
        "views: images, pairs, errors (the results tables of every --results folder, told apart by run_id) and "
        "runs (the registry given by --registry or $PRFEVAL_REGISTRY, else the folders' run.json).",
        "read-only: one SELECT/WITH/DESCRIBE/SHOW/SUMMARIZE/EXPLAIN statement; anything that writes, attaches, "
        "loads or configures is refused (exit 2), and the query cannot reach files or the network.",
        "",
        "examples (run one with --example NAME):",
    ]
    for name, (what, _) in EXAMPLES.items():
        lines += ["", f"  {name}: {what}", textwrap.indent(example_sql(name), "      ")]
    lines += [
        "",
        '  prfeval query --results s3://bucket/nightly/results "SELECT codec, avg(psnr) FROM images '
        'GROUP BY ALL"',
    ]
    return "\n".join(lines)


def build_parser() -> ArgumentParser:
    import argparse

    p = ArgumentParser(
        prog="prfeval query",
        description="Read-only DuckDB SQL over results folders, local or on S3.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("sql", nargs="?", help="one SQL query (or use --example)")
    p.add_argument(
        "--results",
        action="append",
        default=[],
        metavar="URI",
        help="a results folder (repeatable: several runs are queried together)",
    )
    p.add_argument("--registry", help="runs registry root for the runs view (default: $PRFEVAL_REGISTRY)")
    p.add_argument("--example", choices=list(EXAMPLES), help="run a built-in example (see below)")
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    p.add_argument("--out", metavar="URI", help="write the result to this file (required for parquet)")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown by --format table (default: 100)")
    return p


# ---------------------------------------------------------------------------------------------- output


def _open_out(uri: str):
    fs, path = storage.filesystem(uri)
    if storage.is_local(uri):
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    return fs.open(path, "wb")


def _json_default(v):
    return v.isoformat() if hasattr(v, "isoformat") else str(v)


def _clean(v):
    if isinstance(v, float) and v != v:
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    return v


def write_result(reader: pa.RecordBatchReader, fmt: str, out: str | None, max_rows: int) -> int:
    """Write a query's result in ``fmt`` to ``out`` (or stdout); returns the rows written."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rows = 0
    if fmt == "table":
        table = pa.Table.from_batches(list(_head(reader, max_rows + 1)), schema=reader.schema)
        text = _format_table(table.slice(0, max_rows), more=table.num_rows > max_rows)
        if out:
            storage.write_text(out, text)
        else:
            print(text, end="")
        return min(table.num_rows, max_rows)
    sink = _open_out(out) if out else sys.stdout.buffer
    try:
        if fmt == "parquet":
            with pq.ParquetWriter(sink, reader.schema, compression=tables.COMPRESSION) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        elif fmt == "csv":
            with pacsv.CSVWriter(sink, reader.schema) as writer:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
        else:  # json: one array of records
            sink.write(b"[")
            for batch in reader:
                for record in batch.to_pylist():
                    sink.write(
                        (b",\n" if rows else b"\n")
                        + json.dumps(_clean(record), default=_json_default, ensure_ascii=False).encode()
                    )
                    rows += 1
            sink.write(b"\n]\n")
    finally:
        if out:
            sink.close()
        else:
            sys.stdout.flush()
    return rows


def _head(reader: pa.RecordBatchReader, n: int):
    left = n
    for batch in reader:
        if left <= 0:
            break
        yield batch.slice(0, left)
        left -= batch.num_rows


def _format_table(table: pa.Table, more: bool) -> str:
    import pandas as pd

    if table.column_names == ["explain_key", "explain_value"]:  # a query plan: print it as drawn
        return "".join(f"{k}\n{v}\n" for k, v in zip(*table.to_pydict().values(), strict=True))
    df = table.to_pandas()
    with pd.option_context("display.max_columns", None, "display.width", 200, "display.max_colwidth", 80):
        text = df.to_string(index=False) if len(df.columns) else "(no columns)"
    if df.empty:
        text = f"(no rows; columns: {', '.join(table.column_names)})"
    note = "\n… more rows: use --max-rows, or --format csv/json/parquet" if more else ""
    return text + note + "\n"


@command
def main(argv: list[str] | None = None) -> int:
    import duckdb

    from pipeline.sql import QueryError, connect, execute

    args = build_parser().parse_args(argv)
    if args.example and args.sql:
        raise UsageError("give either SQL or --example, not both")
    sql = example_sql(args.example) if args.example else args.sql
    if not sql:
        raise UsageError("no SQL given (or --example NAME); see prfeval query --help")
    if args.format == "parquet" and not args.out:
        raise UsageError("--format parquet needs --out FILE")
    if args.max_rows < 1:
        raise UsageError("--max-rows must be at least 1")
    registry = runs.registry_root(args.registry)
    if not args.results and not registry:
        raise UsageError("nothing to query: give --results URI (repeatable) and/or --registry URI")
    try:
        con = connect(args.results, registry=registry)
        reader = execute(con, sql)
        n = write_result(reader, args.format, args.out, args.max_rows)
    except QueryError as e:
        raise UsageError(str(e)) from None
    except (duckdb.Error, pa.ArrowException) as e:
        raise UsageError(f"query failed: {storage.redact(str(e))}") from None
    if args.out:
        print(f"{n} row(s) written to {storage.display(args.out)}", file=sys.stderr)
    return EXIT_OK


__all__ = ["EXAMPLES", "build_parser", "example_sql", "main", "write_result"]
