"""`prfeval query` end to end: SQL over real evaluate results (local and on a real S3 server), checked with pandas."""

from __future__ import annotations

import glob
import io
import json
import os

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageFilter

from jobs import evaluate, query
from pipeline.io import storage
from pipeline.scoring import results

pytestmark = pytest.mark.slow


def q(capsys, *args: str) -> tuple[int, str, str]:
    code = query.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def parquet_frame(paths: list[str], fs=None) -> pd.DataFrame:
    """The rows of Parquet files read directly, without prfeval's readers."""
    return pd.concat([pq.read_table(p, filesystem=fs).to_pandas() for p in paths], ignore_index=True)


def blurred_jpeg_manifest(manifest_uri: str, df: pd.DataFrame) -> str:
    """A second run's manifest: the JPEG outputs blurred (lower PSNR), everything else unchanged."""
    base = storage.parent(manifest_uri)
    rows = df.copy()
    for i, row in rows[rows.codec == "jpeg"].iterrows():
        img = Image.open(io.BytesIO(storage.read_bytes(storage.join(base, row.dist_uri)))).convert("RGB")
        buf = io.BytesIO()
        img.filter(ImageFilter.GaussianBlur(1.5)).save(buf, format="PNG")
        rows.at[i, "dist_uri"] = f"blurred/{row.dist_id}.png"
        storage.write_bytes(storage.join(base, rows.at[i, "dist_uri"]), buf.getvalue())
    uri = storage.join(base, "blurred.csv")
    storage.write_text(uri, rows.to_csv(index=False))
    return uri


@pytest.fixture
def two_runs(ray_local, tmp_path, local_manifest) -> tuple[str, str]:
    manifest_uri, df = local_manifest
    a, b = str(tmp_path / "run-a"), str(tmp_path / "run-b")
    assert evaluate.main(["--manifest", manifest_uri, "--output", a, "--no-progress"]) == 0
    assert (
        evaluate.main(["--manifest", blurred_jpeg_manifest(manifest_uri, df), "--output", b, "--no-progress"])
        == 0
    )
    return a, b


def test_query_equals_pandas_across_runs_formats_and_examples(two_runs, tmp_path, capsys):
    a, b = two_runs
    images = parquet_frame(sorted(glob.glob(f"{a}/images/*.parquet") + glob.glob(f"{b}/images/*.parquet")))
    pairs = parquet_frame(sorted(glob.glob(f"{a}/pairs/*.parquet") + glob.glob(f"{b}/pairs/*.parquet")))
    run_a, run_b = results.read_run(a)["run_id"], results.read_run(b)["run_id"]
    common = ["--results", a, "--results", b]

    # aggregates over both runs, told apart by run_id (CSV on stdout)
    sql = (
        "SELECT run_id, codec, setting, count(*) AS n, avg(psnr) AS psnr, avg(bpp) AS bpp, "
        "avg(prf_score) AS prf_score FROM images GROUP BY ALL ORDER BY run_id, codec, setting"
    )
    code, out, _ = q(capsys, *common, "--format", "csv", sql)
    assert code == 0
    got = pd.read_csv(io.StringIO(out))
    want = (
        images.groupby(["run_id", "codec", "setting"])
        .agg(n=("psnr", "size"), psnr=("psnr", "mean"), bpp=("bpp", "mean"), prf_score=("prf_score", "mean"))
        .reset_index()
    )
    assert set(got["run_id"]) == {run_a, run_b}
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)

    # JSON, and the pairs view
    sql = (
        "SELECT a_codec, b_codec, count(*) AS n, avg(p_a) AS p FROM pairs "
        f"WHERE run_id = '{run_a}' GROUP BY ALL ORDER BY ALL"
    )
    code, out, _ = q(capsys, *common, "--format", "json", sql)
    got = pd.DataFrame(json.loads(out))
    mine = pairs[pairs.run_id == run_a]
    want = mine.groupby(["a_codec", "b_codec"]).agg(n=("p_a", "size"), p=("p_a", "mean")).reset_index()
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)

    # Parquet to a file equals the same query as CSV; table format is for people
    target = str(tmp_path / "exports" / "images.parquet")
    code, _, err = q(
        capsys, *common, "--format", "parquet", "--out", target, "SELECT * FROM images ORDER BY ALL"
    )
    assert code == 0 and f"{len(images)} row(s) written" in err
    exported = pq.read_table(target).to_pandas()
    assert len(exported) == len(images) and set(exported["dist_id"]) == set(images["dist_id"])
    assert list(exported.columns[:3]) == ["run_id", "ref_id", "dist_id"] and "team" in exported.columns
    code, out, _ = q(capsys, *common, "--max-rows", "3", "SELECT dist_id, psnr FROM images ORDER BY dist_id")
    assert code == 0 and out.splitlines()[0].split() == ["dist_id", "psnr"] and "more rows" in out
    assert len(out.splitlines()) == 1 + 3 + 1
    code, out, _ = q(capsys, *common, "EXPLAIN SELECT codec FROM images WHERE bpp > 1")
    assert code == 0 and out.startswith("physical_plan\n") and "\\n" not in out  # the plan as drawn

    # every built-in example runs; three are checked against pandas
    for name in query.EXAMPLES:
        code, out, err = q(capsys, *common, "--example", name, "--format", "json")
        assert code == 0, (name, err)
        assert isinstance(json.loads(out), list)
    _, out, _ = q(capsys, *common, "--example", "top-codecs", "--format", "json")
    top = pd.DataFrame(json.loads(out))
    with_bpp = images[images.bpp.notna()].assign(bpp_bucket=lambda d: np.floor(d.bpp / 0.5) * 0.5)
    per = with_bpp.groupby(["bpp_bucket", "codec"]).agg(prf_score=("prf_score", "mean")).reset_index()
    best = per.sort_values(["bpp_bucket", "prf_score", "codec"], ascending=[True, False, True])
    best = best.groupby("bpp_bucket").head(3).reset_index(drop=True)
    pd.testing.assert_frame_equal(
        top[["bpp_bucket", "codec", "prf_score"]], best, check_dtype=False, rtol=1e-9
    )
    _, out, _ = q(capsys, *common, "--example", "run-deltas", "--format", "json")
    deltas = pd.DataFrame(json.loads(out))
    assert set(deltas["run_id"]) == {max(run_a, run_b)} and set(deltas["previous_run"]) == {min(run_a, run_b)}
    means = images.groupby(["run_id", "codec", "setting"])["psnr"].mean()
    for r in deltas.itertuples():
        want = means[(r.run_id, r.codec, r.setting)] - means[(r.previous_run, r.codec, r.setting)]
        assert r.d_psnr == pytest.approx(want, abs=1e-9)
    jpeg_delta = deltas[deltas.codec == "jpeg"]["d_psnr"] * (1 if run_b > run_a else -1)
    assert (jpeg_delta < 0).all()  # run b blurred its JPEG outputs
    assert (deltas[deltas.codec == "webp"]["d_psnr"] == 0).all()
    _, out, _ = q(capsys, *common, "--example", "worst-images", "--format", "json")
    worst = pd.DataFrame(json.loads(out))
    jpeg = images[images.codec == "jpeg"].sort_values(["prf_win_rate", "psnr", "dist_id", "run_id"])
    assert worst["dist_id"].tolist() == jpeg["dist_id"].head(10).tolist()
    _, out, _ = q(capsys, *common, "--example", "runs", "--format", "json")
    assert {r["run_id"] for r in json.loads(out)} == {run_a, run_b}

    # a write is refused with a clear error, and nothing is written
    sneaky = str(tmp_path / "copied.csv")
    code, _, err = q(capsys, *common, f"COPY images TO '{sneaky}'")
    assert code == 2 and "COPY statements are refused" in err and "read-only" in err
    assert not os.path.exists(sneaky)
    code, _, err = q(capsys, *common, "ATTACH 'other.db'")
    assert code == 2 and "ATTACH statements are refused" in err
    code, _, err = q(capsys, *common, f"SELECT * FROM read_csv('{sneaky}')")
    assert code == 2 and "disabled by configuration" in err


def test_query_results_on_s3(ray_local, s3, s3_manifest, capsys):
    manifest_uri, df = s3_manifest
    out = s3.uri("results")
    assert evaluate.main(["--manifest", manifest_uri, "--output", out, "--no-progress"]) == 0
    capsys.readouterr()  # evaluate's own summary
    paths = sorted(s3.fs.glob(f"{s3.bucket}/results/images/*.parquet"))
    images = parquet_frame(paths, fs=s3.arrow_fs)
    assert len(images) == len(df)
    sql = "SELECT ref_id, codec, avg(psnr) AS psnr, max(ms_ssim) AS ms_ssim FROM images GROUP BY ALL ORDER BY ALL"
    code, stdout, _ = q(capsys, "--results", out, "--format", "json", sql)
    assert code == 0
    got = pd.DataFrame(json.loads(stdout))
    want = (
        images.groupby(["ref_id", "codec"])
        .agg(psnr=("psnr", "mean"), ms_ssim=("ms_ssim", "max"))
        .reset_index()
    )
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)
    # results written back to the bucket
    target = s3.uri("exports/pairs.parquet")
    assert q(capsys, "--results", out, "--format", "parquet", "--out", target, "SELECT * FROM pairs")[0] == 0
    with s3.fs.open(f"{s3.bucket}/exports/pairs.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == len(results.read_table(out, "pairs")) > 0
    code, _, err = q(capsys, "--results", out, "INSERT INTO images SELECT * FROM images")
    assert code == 2 and "INSERT statements are refused" in err


def test_usage_errors_exit_2(tmp_path, capsys):
    code, _, err = q(capsys, "--results", str(tmp_path / "none"), "SELECT 1")
    assert code == 2 and "not a results folder" in err
    assert q(capsys, "--results", str(tmp_path), "--example", "runs", "SELECT 1")[0] == 2
    assert (
        q(capsys, "--results", str(tmp_path), "--format", "parquet", "SELECT 1")[2].count("needs --out") == 1
    )
    code, _, err = q(capsys, "SELECT 1")
    assert code == 2 and "nothing to query" in err
    code, _, err = q(capsys, "--results", str(tmp_path), "--example", "nope")
    assert code == 2 and "invalid choice" in err
    help_text = query.build_parser().format_help()
    for name in ("top-codecs", "worst-images", "run-deltas"):
        assert name in help_text
    assert "QUALIFY row_number()" in help_text and "read-only" in help_text


def timed_results(uri: str) -> pd.DataFrame:
    """A results folder whose images carry a sweep's speed columns (as `prfeval sweep` → `evaluate` writes them)."""
    from pipeline.io import schemas

    rng = np.random.default_rng(0)
    rows = []
    for r in range(3):
        for codec, speed in (("jpeg", 60.0), ("avif", 0.8), ("jxl", 5.0)):
            for k in range(3):
                rows.append(
                    {
                        "run_id": "run-timed",
                        "ref_id": f"ref{r}",
                        "dist_id": f"ref{r}-{codec}-{k}",
                        "codec": codec,
                        "setting": f"q={k}",
                        "bpp": 0.2 * (k + 1) * rng.uniform(0.9, 1.1),
                        "encode_mp_per_s": speed * rng.uniform(0.8, 1.2),
                        "decode_mp_per_s": 3 * speed * rng.uniform(0.8, 1.2),
                    }
                )
    df = pd.DataFrame(rows)
    for ref_id, g in df.groupby("ref_id"):
        tables = {
            "images": schemas.conform(g.to_dict("records"), schemas.IMAGES),
            "pairs": schemas.conform([], schemas.PAIRS),
            "errors": schemas.conform([], schemas.ERRORS),
        }
        results.write_group(uri, str(ref_id), tables)
    results.write_run(uri, {"run_id": "run-timed", "status": "finished"})
    return df


def test_speed_example_medians_per_codec(tmp_path, capsys):
    folder = str(tmp_path / "timed")
    df = timed_results(folder)
    code, out, err = q(capsys, "--results", folder, "--example", "speed", "--format", "json")
    assert code == 0, err
    got = pd.DataFrame(json.loads(out))
    want = (
        df.groupby("codec")
        .agg(
            images=("bpp", "size"),
            encode_mp_per_s=("encode_mp_per_s", "median"),
            decode_mp_per_s=("decode_mp_per_s", "median"),
            median_bpp=("bpp", "median"),
            mean_bpp=("bpp", "mean"),
        )
        .sort_values("encode_mp_per_s", ascending=False)
        .reset_index()
    )
    assert got["codec"].tolist() == ["jpeg", "jxl", "avif"]
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-12)
    assert "speed: per codec: median encode and decode megapixels" in query.build_parser().format_help()
