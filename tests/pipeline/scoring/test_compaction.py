"""Compacted results tables on synthetic groups (no Ray): file counts, readers equal before and after, a crash
before or after the index is published, recompaction of only what changed, old per-group outputs."""

from __future__ import annotations

import glob
import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pipeline import sql
from pipeline.io import schemas, storage
from pipeline.io.records import group_key
from pipeline.io.tables import write_parquet
from pipeline.scoring import compaction, results


def group(ref: str, *, run_id: str = "run-1", psnr: float = 30.0, errors: int = 0) -> dict:
    images = [{"run_id": run_id, "ref_id": ref, "dist_id": f"{ref}-{c}", "codec": c, "setting": "q=1",
               "bpp": 0.5 + k, "psnr": psnr + k} for k, c in enumerate(["jpeg", "webp", "avif"])]  # fmt: skip
    pairs = [{"run_id": run_id, "ref_id": ref, "a_id": a["dist_id"], "b_id": b["dist_id"], "p_a": 0.25}
             for i, a in enumerate(images) for b in images[i + 1:]]  # fmt: skip
    errs = [{"run_id": run_id, "stage": "load", "ref_id": ref, "dist_id": f"{ref}-bad{k}", "error": "corrupt"}
            for k in range(errors)]  # fmt: skip
    return {"images": schemas.conform(images, schemas.IMAGES), "pairs": schemas.conform(pairs, schemas.PAIRS),
            "errors": schemas.conform(errs, schemas.ERRORS)}  # fmt: skip


def write_groups(out: str, refs, **kw) -> None:
    for ref in refs:
        results.write_group(out, group_key(ref), group(ref, **kw))


def frame(out: str, name: str) -> pd.DataFrame:
    keys = {"images": ["dist_id"], "pairs": ["a_id", "b_id"], "errors": ["dist_id"]}[name]
    df = results.read_table(out, name)
    return df.sort_values(keys).reset_index(drop=True)


def snapshot(out: str) -> dict[str, pd.DataFrame]:
    return {t: frame(out, t) for t in compaction.TABLE_NAMES}


def assert_same(a: dict, b: dict) -> None:
    for t in compaction.TABLE_NAMES:
        pd.testing.assert_frame_equal(a[t], b[t], check_dtype=False)


def files_of(out: str, table: str) -> list[str]:
    return sorted(os.path.relpath(p, out) for p in glob.glob(f"{out}/{table}/**/*.parquet", recursive=True))


REFS = [f"ref-{i:03d}" for i in range(40)]


def test_compacted_tables_are_a_few_files_and_read_the_same(tmp_path):
    out = str(tmp_path / "out")
    write_groups(out, REFS[:30])
    write_groups(out, REFS[30:], errors=2)
    results.write_errors(out, "input", [{"stage": "manifest", "error": "bad_row", "message": "x"}], "run-1")
    before = snapshot(out)
    assert len(files_of(out, "images")) == 40 and not storage.exists(compaction.index_uri(out))
    assert results.compact(out, expected_groups=40)
    after = snapshot(out)
    assert_same(before, after)
    for t in compaction.TABLE_NAMES:  # one file per table, parts gone
        assert len(files_of(out, t)) == 1 and files_of(out, t)[0].startswith(f"{t}/part-"), files_of(out, t)
    assert len(after["images"]) == 120 and len(after["pairs"]) == 120 and len(after["errors"]) == 21
    # rows sorted by ref_id, a raw glob sees exactly the table, counts come from the index
    images = pq.read_table(glob.glob(f"{out}/images/*.parquet")[0]).to_pandas()
    assert images["ref_id"].is_monotonic_increasing
    assert (
        len(pd.read_parquet(glob.glob(f"{out}/pairs/*.parquet"))) == results.count_rows(out, "pairs") == 120
    )
    assert results.finished_groups(out) == {group_key(r) for r in REFS}
    assert results.error_groups(out) == {group_key(r) for r in REFS[30:]} | {"input"}
    # nothing new: nothing is written
    mtimes = {
        f: os.path.getmtime(os.path.join(out, f)) for t in compaction.TABLE_NAMES for f in files_of(out, t)
    }
    index_mtime = os.path.getmtime(compaction.index_uri(out))
    assert not results.compact(out, expected_groups=40)
    assert {f: os.path.getmtime(os.path.join(out, f)) for f in mtimes} == mtimes
    assert os.path.getmtime(compaction.index_uri(out)) == index_mtime
    # the query views read the compacted files
    con = sql.connect([out])
    assert con.execute("SELECT count(*) FROM pairs").fetchone()[0] == 120


class Crash(RuntimeError):
    pass


def crash_at(monkeypatch, stage: str, after: int = 1) -> None:
    seen = {"n": 0}

    def step(name: str) -> None:
        if name == stage:
            seen["n"] += 1
            if seen["n"] >= after:
                raise Crash(stage)

    monkeypatch.setattr(compaction, "_step", step)


def test_a_crash_before_publishing_leaves_the_parts_and_a_rerun_finishes(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    write_groups(out, REFS, errors=1)
    before = snapshot(out)
    crash_at(monkeypatch, "written", after=2)  # images written, pairs written, then the crash
    with pytest.raises(Crash):
        results.compact(out)
    assert not storage.exists(compaction.index_uri(out))
    assert_same(before, snapshot(out))  # readers: the parts, exactly once (new files ignored)
    assert results.finished_groups(out) == {group_key(r) for r in REFS}
    monkeypatch.setattr(compaction, "_step", lambda name: None)
    monkeypatch.setattr(compaction, "ORPHAN_GRACE_S", 0.0)
    assert results.compact(out)
    assert_same(before, snapshot(out))
    for t in compaction.TABLE_NAMES:  # the unpublished files are gone: a raw glob sees the published table
        assert len(files_of(out, t)) == 1
        assert len(pd.read_parquet(glob.glob(f"{out}/{t}/*.parquet")[0])) == len(before[t])


def test_a_crash_after_publishing_leaves_covered_parts_that_readers_ignore(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    write_groups(out, REFS)
    before = snapshot(out)
    crash_at(monkeypatch, "published")
    with pytest.raises(Crash):
        results.compact(out)
    assert storage.exists(compaction.index_uri(out)) and len(files_of(out, "images")) == 41
    assert_same(before, snapshot(out))  # the index's files only, not the parts as well
    assert results.count_rows(out, "images") == len(before["images"])
    monkeypatch.setattr(compaction, "_step", lambda name: None)
    assert results.compact(out)  # the rerun folds them again and deletes them
    assert_same(before, snapshot(out))
    assert [len(files_of(out, t)) for t in compaction.TABLE_NAMES] == [1, 1, 0]  # no error rows: no file


def test_recompaction_rewrites_only_the_buckets_that_changed(tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    monkeypatch.setattr(compaction, "TARGET_FILE_BYTES", 1)  # a bucket per group at most: here 8 buckets
    write_groups(out, REFS[:8])
    results.compact(out)
    index = compaction.read_index(out)
    assert index["tables"]["images"]["buckets"] == 8
    first = {f["name"] for f in index["tables"]["images"]["files"]}
    # rescore one group with other values, add one new group
    rescored, new = REFS[0], REFS[8]
    write_groups(out, [rescored], psnr=50.0, run_id="run-1")
    write_groups(out, [new])
    assert results.compact(out)
    index = compaction.read_index(out)
    assert index["tables"]["images"]["buckets"] == 8  # fixed once chosen
    now = {f["name"] for f in index["tables"]["images"]["files"]}
    touched = {compaction.bucket_of(group_key(r), 8) for r in (rescored, new)}
    assert len(first - now) <= len(touched) and len(now - first) == len(touched)
    images = frame(out, "images")
    assert len(images) == 27 and not images.duplicated("dist_id").any()
    assert images.set_index("dist_id").loc[f"{rescored}-jpeg", "psnr"] == 50.0
    assert set(os.listdir(f"{out}/images")) == now | {"_parts"} and not os.listdir(f"{out}/images/_parts")


def test_a_retried_group_replaces_its_error_rows(tmp_path):
    out = str(tmp_path / "out")
    write_groups(out, REFS[:5], errors=2)
    results.compact(out)
    assert len(frame(out, "errors")) == 10
    write_groups(out, REFS[:2])  # retried: no errors now (their stale error parts are removed)
    write_groups(out, REFS[2:3], errors=1)  # still one
    results.compact(out)
    errors = frame(out, "errors")
    assert sorted(errors.groupby("ref_id").size().items()) == [("ref-002", 1), ("ref-003", 2), ("ref-004", 2)]
    assert results.error_groups(out) == {group_key(r) for r in REFS[2:5]}
    # unscored rows of another unit made exactly what is given, then dropped
    results.replace_errors(out, "clic-rows", [{"stage": "clic", "error": "unscored"}], "run-1")
    assert len(frame(out, "errors")) == 6
    results.replace_errors(out, "clic-rows", [], "run-1")
    assert len(frame(out, "errors")) == 5 and "clic-rows" not in results.table_keys(out, "errors")


def write_old_layout(out: str, refs) -> None:
    """A results folder as written before compaction: one file per group directly under each table."""
    for ref in refs:
        for name, table in group(ref, errors=1).items():
            write_parquet(storage.join(out, name, f"{group_key(ref)}.parquet"), table)


def test_old_per_group_outputs_are_read_and_folded_on_resume(tmp_path):
    out = str(tmp_path / "old")
    write_old_layout(out, REFS[:6])
    before = snapshot(out)
    assert len(before["images"]) == 18 and results.count_rows(out, "pairs") == 18
    assert results.finished_groups(out) == {group_key(r) for r in REFS[:6]}
    con = sql.connect([out])
    assert con.execute("SELECT count(*) FROM images").fetchone()[0] == 18
    # resumed by this version: new parts beside the old files, then compacted into one view
    write_groups(out, REFS[6:8])
    results.compact(out)
    after = snapshot(out)
    assert len(after["images"]) == 24 and len(after["errors"]) == 6
    pd.testing.assert_frame_equal(after["images"][after["images"].ref_id < "ref-006"], before["images"])
    assert all(len(files_of(out, t)) == 1 for t in compaction.TABLE_NAMES)


def test_a_crash_on_s3_and_a_rerun_give_every_row_once(s3, monkeypatch):
    out = s3.uri("results")
    write_groups(out, REFS[:12], errors=1)
    before = snapshot(out)
    crash_at(monkeypatch, "written", after=1)
    with pytest.raises(Crash):
        results.compact(out)
    assert_same(before, snapshot(out))
    crash_at(monkeypatch, "published")
    with pytest.raises(Crash):
        results.compact(out)
    assert_same(before, snapshot(out))
    monkeypatch.setattr(compaction, "_step", lambda name: None)
    monkeypatch.setattr(compaction, "ORPHAN_GRACE_S", 0.0)
    assert results.compact(out)
    assert_same(before, snapshot(out))
    for t in compaction.TABLE_NAMES:
        listed = s3.fs.find(f"{s3.bucket}/results/{t}/")
        assert len(listed) == 1 and listed[0].rsplit("/", 1)[-1].startswith("part-"), listed
