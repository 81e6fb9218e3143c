"""`prfeval evaluate` end to end: real local Ray, real S3 server, real Parquet read back by pandas and DuckDB."""

from __future__ import annotations

import io
import json

import duckdb
import numpy as np
import pandas as pd
import pytest

from jobs import evaluate
from pipeline.io import storage
from pipeline.scoring import results

pytestmark = pytest.mark.slow


def run(*args: str) -> int:
    return evaluate.main([*args, "--no-progress"])


def test_end_to_end_on_s3(ray_local, s3, s3_manifest):
    manifest_uri, df = s3_manifest
    out = s3.uri("results")
    codecs_uri = s3.uri("in/codecs.csv")
    storage.write_text(
        codecs_uri, "codec,codec_version,library\njpeg,test,libjpeg-turbo\nwebp,test,libwebp\n"
    )
    assert run("--manifest", manifest_uri, "--codecs", codecs_uri, "--output", out) == 0
    images = results.read_table(out, "images")
    pairs = results.read_table(out, "pairs")
    assert len(images) == len(df)
    # codec metadata joined on (codec, codec_version): into images, and into pairs once per side
    assert (images["library"] == images["codec"].map({"jpeg": "libjpeg-turbo", "webp": "libwebp"})).all()
    assert (pairs["a_library"] == pairs["a_codec"].map({"jpeg": "libjpeg-turbo", "webp": "libwebp"})).all()
    assert (pairs["b_library"] == pairs["b_codec"].map({"jpeg": "libjpeg-turbo", "webp": "libwebp"})).all()
    per_group = df.groupby("ref_id").size()
    assert len(pairs) == sum(n * (n - 1) // 2 for n in per_group)
    assert pairs["p_a"].between(0, 1).all()
    assert np.allclose(pairs["p_a"], 1 / (1 + np.exp(-pairs["logit"])))
    assert (pairs["checkpoint_sha256"].str.len() == 64).all()
    assert images["team"].eq("t1").all()  # carried manifest column
    assert images["prf_win_rate"].between(0, 1).all() and images["prf_score"].notna().all()
    assert (images["bpp"] - images["bytes"] * 8 / (images["width"] * images["height"])).abs().max() < 1e-12
    # DuckDB reads the same Parquet objects straight from the bucket through an fsspec filesystem
    con = duckdb.connect()
    con.register_filesystem(s3.fs)
    n = con.execute(
        f"select count(*) from read_parquet('s3://{s3.bucket}/results/pairs/*.parquet')"
    ).fetchone()[0]
    assert n == len(pairs)
    # a finished run's tables are one compacted file each, beside the index
    assert [len(s3.fs.find(f"{s3.bucket}/results/{t}/")) for t in ("images", "pairs")] == [1, 1]
    assert s3.fs.exists(f"{s3.bucket}/results/_tables.json")
    run_json = json.loads(s3.fs.cat(f"{s3.bucket}/results/run.json"))
    assert run_json["counts"]["pairs"] == len(pairs) and run_json["status"] == "finished"
    assert (
        run_json["versions"]["torch"] and run_json["checkpoint_sha256"] == pairs["checkpoint_sha256"].iloc[0]
    )
    # classic metrics against independent implementations, on the decoded files in the bucket
    import torch
    from PIL import Image
    from pytorch_msssim import ms_ssim
    from skimage.metrics import peak_signal_noise_ratio

    def load(uri):
        return np.asarray(Image.open(io.BytesIO(storage.read_bytes(uri))).convert("RGB"))

    for row in images.itertuples():
        ref, dist = load(row.ref_uri), load(row.dist_uri)
        assert row.psnr == pytest.approx(peak_signal_noise_ratio(ref, dist, data_range=255), abs=1e-6)
        if min(ref.shape[:2]) > 160:
            t = lambda a: torch.from_numpy(a.copy()).permute(2, 0, 1)[None].double()  # noqa: E731
            assert row.ms_ssim == pytest.approx(ms_ssim(t(ref), t(dist), data_range=255).item(), abs=1e-4)
        else:
            assert pd.isna(row.ms_ssim)  # too small for 5 scales
    assert images["ms_ssim"].notna().any()
    # quality sanity on real codecs: higher JPEG quality has higher PSNR
    jpeg = images[images.codec == "jpeg"].assign(q=lambda d: d.setting.str[2:].astype(int))
    for _, g in jpeg.groupby("ref_id"):
        assert g.sort_values("q")["psnr"].is_monotonic_increasing


def table_files(out: str) -> list[str]:
    """Every file of the results tables (compacted files, parts, the index), relative to ``out``."""
    import glob
    import os

    found = [*glob.glob(f"{out}/*/**/*.parquet", recursive=True), *glob.glob(f"{out}/_tables.json")]
    return sorted(os.path.relpath(p, out) for p in found if not os.path.relpath(p, out).startswith("report"))


def test_rerun_is_idempotent_and_resumes(ray_local, tmp_path, local_manifest, monkeypatch):
    import os

    from pipeline.scoring import compaction

    manifest_uri, df = local_manifest
    out = str(tmp_path / "out")
    assert run("--manifest", manifest_uri, "--output", out) == 0
    pairs = results.read_table(out, "pairs")
    # a finished run: one compacted file per table and the index, no per-group parts left
    files = table_files(out)
    assert [f for f in files if "/_parts/" in f] == []
    assert [f.split("/")[0] for f in files] == ["_tables.json", "images", "pairs"], files  # no error rows
    mtimes = [os.path.getmtime(os.path.join(out, f)) for f in files]
    # a finished run's rerun writes nothing new
    assert run("--manifest", manifest_uri, "--output", out) == 0
    assert table_files(out) == files
    assert [os.path.getmtime(os.path.join(out, f)) for f in files] == mtimes

    # a run killed while compacting (the images file written, the index not yet): its parts stay
    class Killed(BaseException):
        pass

    def kill(name: str) -> None:
        if name == "written":
            raise Killed

    out2 = str(tmp_path / "out2")
    monkeypatch.setattr(compaction, "_step", kill)
    with pytest.raises(Killed):
        run("--manifest", manifest_uri, "--output", out2)
    monkeypatch.setattr(compaction, "_step", lambda name: None)
    assert not os.path.exists(os.path.join(out2, "_tables.json"))
    assert len(results.read_table(out2, "pairs")) == len(pairs)  # the parts, read exactly once
    # and one group's marker (images part) missing, its pairs part present: that group is scored again
    images_parts = storage.listdir(storage.join(out2, "images", "_parts"))
    storage.filesystem(images_parts[0])[0].rm(images_parts[0])
    assert run("--manifest", manifest_uri, "--output", out2) == 0
    again = results.read_table(out2, "pairs")
    assert len(again) == len(pairs)
    assert not again.duplicated(["ref_id", "a_id", "b_id"]).any()
    assert len(results.read_table(out2, "images")) == len(df)
    assert len({r for r in results.read_table(out2, "images")["run_id"]}) == 1
    assert [f.split("/")[0] for f in table_files(out2)] == ["_tables.json", "images", "pairs"]


def test_swapping_order_gives_complement_and_identical_gives_half(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    out1, out2 = str(tmp_path / "o1"), str(tmp_path / "o2")
    assert run("--manifest", manifest_uri, "--output", out1) == 0
    # reverse the row order within each group, and add an exact copy of one image under a new id
    rev = df.iloc[::-1].copy()
    copy = rev.iloc[[0]].assign(dist_id=lambda d: d.dist_id + "-copy")
    rev = pd.concat([rev, copy])
    rev_uri = storage.join(storage.parent(manifest_uri), "reversed.csv")
    storage.write_text(rev_uri, rev.to_csv(index=False))
    assert run("--manifest", rev_uri, "--output", out2) == 0
    p1 = results.read_table(out1, "pairs").set_index(["a_id", "b_id"])["p_a"]
    p2 = results.read_table(out2, "pairs")
    swapped = p2[~p2.b_id.str.endswith("-copy")].set_index(["b_id", "a_id"])["p_a"]
    swapped.index.names = ["a_id", "b_id"]
    joined = pd.concat([p1, swapped], axis=1, join="inner")
    assert len(joined) == len(p1)
    assert np.allclose(joined.iloc[:, 0], 1 - joined.iloc[:, 1], atol=1e-6)
    same = p2[p2.b_id == p2.a_id + "-copy"]
    assert len(same) == 1 and same["p_a"].iloc[0] == pytest.approx(0.5, abs=1e-9)


def test_bad_rows_land_in_errors_and_others_complete(ray_local, tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    base = storage.parent(manifest_uri)
    bad = df.iloc[:3].copy()
    bad["dist_id"] = ["corrupt", "missing", "small"]
    bad["dist_uri"] = ["dist/corrupt.png", "dist/nothere.png", "dist/small.png"]
    real_png = storage.read_bytes(storage.join(base, df.dist_uri.iloc[0]))
    storage.write_bytes(
        storage.join(base, "dist", "corrupt.png"), real_png[: len(real_png) // 2]
    )  # truncated
    from PIL import Image

    Image.new("RGB", (64, 64)).save(storage.join(base, "dist", "small.png"))
    uri = storage.join(base, "with-bad.csv")
    storage.write_text(uri, pd.concat([df, bad]).to_csv(index=False))
    out = str(tmp_path / "out")
    assert run("--manifest", uri, "--output", out) == 1
    errors = results.read_table(out, "errors").set_index("dist_id")
    assert errors.loc["corrupt", "error"] == "corrupt"
    assert errors.loc["missing", "error"] == "missing" and "no such file" in errors.loc["missing", "message"]
    assert errors.loc["small", "error"] == "size_mismatch" and "64x64" in errors.loc["small", "message"]
    assert len(results.read_table(out, "images")) == len(df)


def test_usage_errors_exit_2(ray_local, tmp_path, local_manifest, capsys):
    manifest_uri, df = local_manifest
    dup = storage.join(storage.parent(manifest_uri), "dup.csv")
    storage.write_text(dup, pd.concat([df, df.iloc[[0]]]).to_csv(index=False))
    assert run("--manifest", dup, "--output", str(tmp_path / "o")) == 2
    assert "duplicate dist_id" in capsys.readouterr().err
    assert run("--manifest", manifest_uri, "--output", str(tmp_path / "o"), "--model", "prfnet-tiyn") == 2
    assert "did you mean" in capsys.readouterr().err


GPU_SCRIPT = """
import os, sys, ray
ray.init(address="local", num_cpus=2, num_gpus={gpus}, include_dashboard=False, log_to_driver=False)
from jobs import evaluate
sys.exit(evaluate.main(sys.argv[1:]))
"""


def run_with_fake_gpus(gpus: int, *args: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, "-c", GPU_SCRIPT.format(gpus=gpus), *args, "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        timeout=500,
        check=False,
    )


def test_gpu_actor_path_on_a_fake_gpu_falls_back_to_cpu(tmp_path, local_manifest):
    manifest_uri, df = local_manifest
    out = str(tmp_path / "out")
    proc = run_with_fake_gpus(1, "--manifest", manifest_uri, "--output", out, "--gpus-per-actor", "0.5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(results.read_table(out, "images")) == len(df)


def test_more_gpus_than_exist_fails_fast(tmp_path, local_manifest):
    manifest_uri, _ = local_manifest
    proc = run_with_fake_gpus(1, "--manifest", manifest_uri, "--output", str(tmp_path / "o"), "--actors", "2",
                              "--gpus-per-actor", "1")  # fmt: skip
    assert proc.returncode == 2
    assert "has 1 GPU in total" in proc.stderr and "Traceback" not in proc.stderr


def test_decoding_stays_out_of_the_actors(ray_local, tmp_path, local_manifest, capsys):
    """Ray Data must not fuse the decode tasks into the scoring actors, with 1 or 2 actors."""
    import logging

    manifest_uri, _ = local_manifest
    for actors in (1, 2):
        logger = logging.getLogger("ray.data._internal.execution.streaming_executor")
        records: list[str] = []
        handler = logging.Handler()
        handler.emit = lambda r, sink=records: sink.append(r.getMessage())  # type: ignore[method-assign]
        logger.addHandler(handler)
        level = logger.level
        # quiet runs silence Ray Data on the console; the plan is still logged at INFO for this handler
        logger.setLevel(logging.INFO)
        try:
            assert run("--manifest", manifest_uri, "--output", str(tmp_path / f"o{actors}"), "--actors",
                       str(actors), "--cpus-per-actor", "0.5") == 0  # fmt: skip
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
        plan = [m for m in records if "Execution plan" in m]
        assert (
            plan
            and "TaskPoolMapOperator[Map(load_stage)] -> ActorPoolMapOperator[MapBatches(ScoreActor)]"
            in plan[-1]
        )


def test_killed_while_compacting_on_s3_then_rerun_gives_every_row_once(
    ray_local, s3, s3_manifest, monkeypatch
):
    from pipeline.scoring import compaction

    manifest_uri, df = s3_manifest
    out = s3.uri("killed")

    class Killed(BaseException):
        pass

    def kill(name: str) -> None:
        if name == "published":  # the index written, the folded parts not yet deleted
            raise Killed

    monkeypatch.setattr(compaction, "_step", kill)
    with pytest.raises(Killed):
        run("--manifest", manifest_uri, "--output", out)
    monkeypatch.setattr(compaction, "_step", lambda name: None)
    assert s3.fs.find(f"{s3.bucket}/killed/images/_parts/")  # parts the index already covers
    images = results.read_table(out, "images")
    assert len(images) == len(df) and not images.duplicated("dist_id").any()
    assert run("--manifest", manifest_uri, "--output", out) == 0
    pairs = results.read_table(out, "pairs")
    per_group = df.groupby("ref_id").size()
    assert len(pairs) == sum(n * (n - 1) // 2 for n in per_group)
    assert not pairs.duplicated(["ref_id", "a_id", "b_id"]).any()
    assert len(results.read_table(out, "images")) == len(df)
    assert [len(s3.fs.find(f"{s3.bucket}/killed/{t}/")) for t in ("images", "pairs")] == [1, 1]
