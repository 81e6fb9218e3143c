"""The Ray Data stage adapters called directly on plain rows and Arrow batches (no cluster)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from model import create_model
from pipeline.scoring import results, stages
from pipeline.scoring.load import load_group
from pipeline.scoring.scorer import PairScorer

TENSORS = ("patches", "pairs")


def to_batch(rows: list[dict]) -> pa.Table:
    """Rows as the Arrow batch Ray Data hands the actor: tensors as its tensor extension, the rest inferred."""
    from ray.data.extensions import ArrowTensorArray

    return pa.table({name: ArrowTensorArray.from_numpy([r[name] for r in rows]) if name in TENSORS
                     else pa.array([r[name] for r in rows]) for name in rows[0]})  # fmt: skip


def to_rows(batch: pa.Table) -> list[dict]:
    """An Arrow batch back as the rows a ``map`` stage sees (tensors as numpy arrays)."""
    rows = batch.drop_columns([c for c in TENSORS if c in batch.column_names]).to_pylist()
    for name in TENSORS:
        if name in batch.column_names:
            for row, value in zip(rows, stages._tensors(batch, name), strict=True):
                row[name] = value
    return rows


@pytest.fixture(scope="module")
def actor():
    torch.manual_seed(0)
    a = stages.ScoreActor.__new__(stages.ScoreActor)  # the replica without loading a checkpoint
    a.scorer = PairScorer(create_model("prfnet-tiny").eval(), checkpoint_sha256="untrained", batch_size=8)
    return a


def load_row(group, **kw) -> dict:
    return stages.load_stage(stages.group_row(group), patch=32, min_size=32, max_pixels=None, allow_roots=None,
                             **kw)  # fmt: skip


def test_load_stage_row_has_typed_columns_and_a_tensor(corpus, make_group):
    row = load_row(make_group(["d0", "small", "d1"]))
    assert set(row) == set(stages.GROUP_COLUMNS)
    assert row["patches"].shape == (3, 6, 3, 32, 32) and row["patches"].dtype == np.uint8
    assert row["pairs"].tolist() == [[0, 1]] and row["pairs"].dtype == np.int64
    assert [d["dist_id"] for d in row["dists"]] == ["d0", "d1"] and isinstance(row["dists"][0]["extras"], str)
    assert [(e["dist_id"], e["error"]) for e in row["errors"]] == [("small", "size_mismatch")]
    pa.array([row["dists"]]), pa.array([row["errors"]])  # each is one Arrow list<struct> value


def test_load_stage_takes_the_pairing_options(corpus, make_group):
    assert load_row(make_group(["d0", "d1", "d2"]), pairs="matched", match_tolerance=0.0)["pairs"].shape == (
        0,
        2,
    )
    explicit = load_row(make_group(["d0", "d1", "d2"], pairs=[["d2", "d1"]]), pairs="all")
    assert explicit["pairs"].tolist() == [[2, 1]]


def test_load_stage_last_resort_loses_the_group_with_a_reason(corpus, make_group, monkeypatch):
    monkeypatch.setattr(stages, "load_group", lambda *a, **k: (_ for _ in ()).throw(MemoryError("no room")))
    row = load_row(make_group(["d0", "d1"]))
    assert [(e["dist_id"], e["error"]) for e in row["errors"]] == [("d0", "internal"), ("d1", "internal")]
    assert "MemoryError: no room" in row["errors"][0]["message"] and row["patches"].shape[0] == 0


def test_a_row_with_a_nul_byte_is_an_error_and_the_others_are_scored(corpus, make_group, tmp_path, actor):
    group = make_group(["d0", "nul", "d1", "d2"], uris={"nul": str(tmp_path / "x\x00y.png")})
    [row] = to_rows(actor(to_batch([load_row(group)])))
    out = stages.write_stage(row, output=str(tmp_path / "out"), run_id="run-t", codec_table=None)
    assert (out["images"], out["pairs"], out["errors"], out["failed"]) == (3, 3, 1, False)
    errors = results.read_table(str(tmp_path / "out"), "errors")
    assert errors.dist_id.tolist() == ["nul"] and errors.error.tolist() == ["unreadable"]
    assert "\x00" not in errors.message[0] + errors.uri[0]


def test_actor_scores_like_the_scorer_and_passes_metadata_through(corpus, make_group, actor, tmp_path):
    group = make_group(["d0", "d1", "d2"])
    rows = [load_row(group), load_row(make_group(["small"]))]  # the second has nothing to score
    batch = actor(to_batch(rows))
    assert "patches" not in batch.column_names
    assert batch.column("dists").equals(to_batch(rows).column("dists"))  # untouched
    first, empty = to_rows(batch)
    loaded = load_group(group, patch=32)
    want = actor.scorer.score(loaded.patches, loaded.pair_list())
    np.testing.assert_allclose(first["logits"], want, atol=1e-12)
    assert (first["n_patches"], first["failed"], first["model"]) == (6, False, "prfnet-tiny")
    assert first["checkpoint_sha256"] == "untrained" and first["peak_rss_mb"] > 0
    assert (empty["logits"], empty["n_patches"], empty["failed"]) == ([], 0, False)
    out = stages.write_stage(empty, output=str(tmp_path / "o"), run_id="r", codec_table=None)
    assert (out["images"], out["pairs"], out["errors"]) == (0, 0, 1)


def test_a_scoring_failure_fails_the_group_only_with_its_error(
    corpus, make_group, actor, tmp_path, monkeypatch
):
    monkeypatch.setattr(
        actor.scorer, "score", lambda *a: (_ for _ in ()).throw(RuntimeError("out of memory"))
    )
    [row] = to_rows(actor(to_batch([load_row(make_group(["d0", "d1"]))])))
    assert row["failed"] and row["logits"] == []
    assert [(e["stage"], e["error"]) for e in row["errors"]] == [("score", "scoring_failed")]
    out = stages.write_stage(row, output=str(tmp_path / "o"), run_id="r", codec_table=None)
    assert out["failed"] and (out["images"], out["pairs"], out["errors"]) == (0, 0, 1)
    assert results.finished_groups(str(tmp_path / "o")) == set()  # retried on rerun
    assert "RuntimeError: out of memory" in results.read_table(str(tmp_path / "o"), "errors").message[0]


def test_scored_group_round_trips_the_measured_images(corpus, make_group, actor):
    [row] = to_rows(actor(to_batch([load_row(make_group(["d0", "d1"]))])))
    scored = stages.scored_group(row)
    loaded = load_group(make_group(["d0", "d1"]), patch=32)
    assert scored.dists == loaded.dists and scored.pairs == [(0, 1)] and scored.key == loaded.key
