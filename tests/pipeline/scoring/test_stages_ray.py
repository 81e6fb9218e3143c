"""The stages on a real local Ray: ragged patch tensors, a group with nothing to score, explicit and chosen pairs."""

from __future__ import annotations

import pandas as pd
import pytest

from jobs import evaluate
from pipeline.scoring import results

pytestmark = pytest.mark.slow


def test_ragged_groups_and_a_group_without_patches_flow_through(ray_local, corpus, tmp_path):
    """Groups of different image counts, one with a missing reference (zero patches), one with one bad row."""
    folder = tmp_path
    rows = [
        ("r1", "ref.png", "a", "d0.png", 1000), ("r1", "ref.png", "b", "d1.png", 2000),
        ("r1", "ref.png", "c", "d2.png", 3000),
        ("r2", "none.png", "x", "d0.png", 1000), ("r2", "none.png", "y", "d1.png", 2000),
        ("r3", "ref.png", "p", "d2.png", 1000), ("r3", "ref.png", "q", "small.png", 2000),
        ("r3", "ref.png", "s", "d1.png", 3000),
    ]  # fmt: skip
    df = pd.DataFrame(rows, columns=["ref_id", "ref_uri", "dist_id", "dist_uri", "bytes"]).assign(
        codec="jpeg"
    )
    df.to_csv(folder / "manifest.csv", index=False)
    out = str(folder / "out")
    code = evaluate.main(["--manifest", str(folder / "manifest.csv"), "--output", out, "--no-progress",
                          "--cpus-per-actor", "0.5"])  # fmt: skip
    assert code == 1  # some rows failed
    images = results.read_table(out, "images").set_index("dist_id")
    pairs = results.read_table(out, "pairs")
    errors = results.read_table(out, "errors").set_index("dist_id")
    assert sorted(images.index) == ["a", "b", "c", "p", "s"]
    assert sorted(zip(pairs.a_id, pairs.b_id, strict=True)) == [
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
        ("p", "s"),
    ]
    assert errors.error.to_dict() == {
        "x": "reference_missing",
        "y": "reference_missing",
        "q": "size_mismatch",
    }
    assert images.prf_score.notna().all()
