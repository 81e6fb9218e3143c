"""`prfeval clic` on the real CLIC 2021 validation triplets and labels, with generated stand-in images.

The images of the real set are not reachable here, so each chosen original gets a stand-in: a 128-px crop of a
bundled photo the shipped checkpoint never saw in training (chelsea and rocket are its held-out photos), and each
distorted file a distortion of it whose strength follows the human labels (the more often an image was judged
closer, the milder its distortion). Rows whose labels contradict any such order (human labels have cycles) cap the
reachable accuracy; the test measures that cap independently.
"""

from __future__ import annotations

import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from jobs import clic as clic_job
from model.bundled import default_checkpoint
from pipeline import clic
from pipeline.image import decoding
from pipeline.io import storage
from pipeline.scoring import results
from pipeline.training import synthetic

CLIC_DIR = Path(
    os.environ.get("PRFEVAL_CLIC_DATA", Path(__file__).resolve().parents[1] / "data" / "clic2021")
)
LADDERS = {
    "jpeg": [92, 80, 68, 56, 44, 34, 25, 17, 10, 6],
    "blur": [0.3, 0.5, 0.8, 1.1, 1.5, 2.0, 2.6, 3.3, 4.2, 5.2],
    "noise": [2, 4, 6, 9, 12, 16, 21, 27, 34, 42],
}


def clic_file(name: str) -> Path:
    path = CLIC_DIR / name
    if not path.is_file():
        pytest.skip(f"CLIC 2021 data not found at {CLIC_DIR} (set PRFEVAL_CLIC_DATA)")
    return path


def independent_accuracy(submission_csv: str, oracle_csv: str) -> tuple[float, float]:
    """CLIC's formula, written again from the file format alone: (per-row accuracy, devkit dictionary accuracy).

    Per row: every oracle row counts. The devkit's eval_csv.py: both files read into {first three columns: label},
    later rows overwriting earlier ones, then matches / len(oracle dictionary).
    """
    sub = {",".join(r[:3]): r[3] for r in csv.reader(io.StringIO(submission_csv)) if r}
    rows = [r for r in csv.reader(io.StringIO(oracle_csv)) if r]
    per_row = sum(sub[",".join(r[:3])] == r[3] for r in rows) / len(rows)
    oracle = {",".join(r[:3]): r[3] for r in rows}
    return per_row, sum(sub[k] == v for k, v in oracle.items()) / len(oracle)


def strength_ranks(rows: pd.DataFrame) -> dict[str, int]:
    """0 for the image most often judged closer, then by decreasing wins (name order breaks ties)."""
    wins: dict[str, int] = {}
    for a, b, t in zip(rows["file_a"], rows["file_b"], rows["t"], strict=True):
        wins.setdefault(a, 0)
        wins.setdefault(b, 0)
        wins[a if t == 0 else b] += 1
    return {n: r for r, n in enumerate(sorted(wins, key=lambda n: (-wins[n], n)))}


def rank_consistency(rows: pd.DataFrame) -> float:
    ranks = strength_ranks(rows)
    return float(
        np.mean([(ranks[a] < ranks[b]) == (t == 0) for a, b, t in rows[["file_a", "file_b", "t"]].values])
    )


def choose_originals(oracle: pd.DataFrame) -> list[str]:
    """The first four originals (file order) with at least 3 rows whose labels a strength order mostly explains,
    and the first single-row original."""
    chosen, single = [], None
    for original, rows in oracle.groupby("original", sort=False):
        if len(rows) == 1 and single is None:
            single = original
        elif len(rows) >= 3 and len(chosen) < 4 and rank_consistency(rows) >= 0.8:
            chosen.append(original)
    return [*chosen, single]


def distort(rgb: np.ndarray, family: str, level: int, seed: int) -> np.ndarray:
    from pipeline.codecs import get_codec

    value = LADDERS[family][level]
    if family == "jpeg":
        codec = get_codec("jpeg")
        return codec.decode(codec.encode(rgb, value))
    if family == "blur":
        return synthetic.blur(rgb, value)
    return synthetic.noise(rgb, value, np.random.default_rng(seed))


def write_standins(folder: Path, oracle: pd.DataFrame, originals: list[str]) -> dict[str, dict[str, int]]:
    """Stand-in PNGs named as in the CSV; returns each original's strength ranks."""
    from pipeline.image.samples import load_sample

    photos = [load_sample("chelsea", max_side=384), load_sample("rocket", max_side=384)]
    ranks = {}
    for k, original in enumerate(originals):
        photo = photos[k % 2]
        top, left = 30 * (k // 2), 60 + 40 * (k // 2)
        ref = np.ascontiguousarray(photo[top : top + 128, left : left + 128])
        storage.write_bytes(str(folder / original), decoding.encode_png(ref))
        rows = oracle[oracle["original"] == original]
        ranks[original] = strength_ranks(rows)
        family = list(LADDERS)[k % 3]
        for name, rank in ranks[original].items():
            img = distort(ref, family, rank, seed=k * 100 + rank)
            storage.write_bytes(str(folder / name), decoding.encode_png(img))
    return ranks


@pytest.fixture(scope="module")
def clic_subset(tmp_path_factory):
    """A subset of the real rows (validation.csv and oracle.csv, same rows), stand-in images for them."""
    validation = clic.read_csv(str(clic_file("validation.csv")), labelled=False)
    oracle = clic.read_csv(str(clic_file("oracle.csv")), labelled=True)
    assert (validation[list(clic.COLUMNS)].values == oracle[list(clic.COLUMNS)].values).all()
    originals = choose_originals(oracle)
    keep = oracle["original"].isin(originals).to_numpy()
    base = tmp_path_factory.mktemp("clic")
    val_text = clic_file("validation.csv").read_text().splitlines()
    oracle_text = clic_file("oracle.csv").read_text().splitlines()
    (base / "validation.csv").write_text(
        "\n".join(t for t, k in zip(val_text, keep, strict=True) if k) + "\n"
    )
    (base / "oracle.csv").write_text("\n".join(t for t, k in zip(oracle_text, keep, strict=True) if k) + "\n")
    (base / "images").mkdir()
    ranks = write_standins(base / "images", oracle[keep], originals)
    return {"base": base, "rows": oracle[keep].reset_index(drop=True), "ranks": ranks}


def read_submission(path) -> list[list[str]]:
    return [r for r in csv.reader(io.StringIO(storage.read_text(str(path)))) if r]


@pytest.mark.slow
def test_clic_submission_and_accuracy_on_real_rows(ray_local, clic_subset, capsys):
    base, rows, ranks = clic_subset["base"], clic_subset["rows"], clic_subset["ranks"]
    out = base / "run1" / "submission.csv"
    argv = [
        "--csv",
        str(base / "validation.csv"),
        "--images",
        str(base / "images"),
        "--output",
        str(out),
        "--oracle",
        str(base / "oracle.csv"),
        "--no-progress",
    ]
    assert clic_job.main(argv) == 0
    printed = capsys.readouterr().out

    # the submission: every CSV row, in order, names exactly as given, T in {0, 1}
    submission = read_submission(out)
    given = [r for r in csv.reader(io.StringIO((base / "validation.csv").read_text())) if r]
    assert len(submission) == len(given) == len(rows)
    assert all(len(r) == 4 for r in submission)
    assert [r[:3] for r in submission] == given
    assert {r[3] for r in submission} <= {"0", "1"}

    # prfeval's accuracy equals an independent computation of CLIC's formula
    per_row, distinct = independent_accuracy(storage.read_text(str(out)), (base / "oracle.csv").read_text())
    printed_acc = float(re.search(r"^accuracy: ([0-9.]+)", printed, re.M).group(1))
    work = base / "run1" / "submission-work"
    saved = pd.read_json(work / "accuracy.json", typ="series")
    assert saved["accuracy"] == pytest.approx(per_row, abs=1e-12)
    assert saved["accuracy_distinct"] == pytest.approx(distinct, abs=1e-12)
    assert printed_acc == pytest.approx(per_row, abs=5e-5)
    assert saved["rows"] == len(rows)

    # stand-ins whose labelled-closer image is less distorted: the model follows the distortion strength ...
    t = np.array([int(r[3]) for r in submission])
    by_strength = np.array(
        [0 if ranks[o][a] < ranks[o][b] else 1 for o, a, b in rows[list(clic.COLUMNS)].values]
    )
    assert (t == by_strength).mean() >= 0.9
    # ... so its CLIC accuracy is far above chance, near what any strength order can reach on these labels
    ceiling = float((by_strength == rows["t"].to_numpy()).mean())
    assert per_row >= 0.7
    assert per_row >= ceiling - 0.1

    # each image decoded and encoded once, each unordered pair scored once, the shipped checkpoint recorded
    pairs, imgs = results.read_table(str(work), "pairs"), results.read_table(str(work), "images")
    distinct_pairs = {(o, frozenset((a, b))) for o, a, b in rows[list(clic.COLUMNS)].values if a != b}
    assert len(pairs) == len(distinct_pairs)
    assert len(imgs) == len({(o, n) for o, a, b in rows[list(clic.COLUMNS)].values for n in (a, b)})
    shipped = storage.sha256_of(default_checkpoint("prfnet-tiny"))
    assert set(pairs["checkpoint_sha256"]) == {shipped}
    run = results.read_run(str(work))
    assert run["checkpoint_sha256"] == shipped
    assert f"checkpoint sha256 {shipped}" in printed
    # one run record, finished once the submission is written, with the CLIC facts and the scoring counts
    assert run["kind"] == "clic" and run["status"] == "finished" and run["finished_at"]
    assert run["clic"]["rows"] == len(rows) and run["clic"]["pairs"] == len(distinct_pairs)
    assert run["counts"]["pairs"] == len(pairs) and run["config"]["csv"].endswith(".csv")

    # a rerun resumes from the work folder and writes the same submission
    assert clic_job.main(argv) == 0
    assert f"0 original(s) scored now, {len(ranks)} already scored" in capsys.readouterr().out
    assert read_submission(out) == submission
    # the same work folder with other images is refused
    assert clic_job.main([*argv[:3], str(base), *argv[4:]]) == 2
    assert "holds results of another configuration" in capsys.readouterr().err


@pytest.mark.slow
def test_on_s3_missing_images_still_get_a_row_and_exit_1(ray_local, s3, clic_subset, capsys):
    """CSV, images, submission and work folder on S3; one distorted image missing."""
    base, rows = clic_subset["base"], clic_subset["rows"]
    gone = rows["file_b"].iloc[0]
    for f in (base / "images").iterdir():
        if f.name != gone:
            storage.write_bytes(s3.uri(f"clic/images/{f.name}"), f.read_bytes())
    storage.write_bytes(s3.uri("clic/validation.csv"), (base / "validation.csv").read_bytes())
    out = s3.uri("out/submission.csv")
    argv = [
        "--csv",
        s3.uri("clic/validation.csv"),
        "--images",
        s3.uri("clic/images"),
        "--output",
        out,
        "--no-progress",
    ]
    assert clic_job.main(argv) == 1
    err = capsys.readouterr().err
    submission = read_submission(out)
    assert len(submission) == len(rows)
    hit = [i for i, (o, a, b) in enumerate(rows[list(clic.COLUMNS)].values) if gone in (a, b)]
    assert hit and all(submission[i][3] == "0" for i in hit)
    work = s3.uri("out/submission-work")
    errors = results.read_table(work, "errors")
    listed = errors[errors["error"] == "unscored_row"]
    assert len(listed) == len(hit)
    assert all(gone in m and "missing" in m for m in listed["message"])
    assert f"{len(hit)} row(s) without a score" in err
    assert len(results.read_table(work, "pairs")) > 0  # the other rows were scored

    # the image is back: --retry-errors scores its original again and every row has a score
    storage.write_bytes(s3.uri(f"clic/images/{gone}"), (base / "images" / gone).read_bytes())
    assert clic_job.main([*argv, "--retry-errors"]) == 0
    errors = results.read_table(work, "errors")
    assert not (errors["error"] == "unscored_row").any()
    predictions = pd.read_csv(io.StringIO(storage.read_text(storage.join(work, "predictions.csv"))))
    assert predictions["p_a"].notna().all()
    assert [r[:3] for r in read_submission(out)] == [r[:3] for r in submission]


def test_usage_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("o.png,a.png\n")
    assert (
        clic_job.main(["--csv", str(bad), "--images", str(tmp_path), "--output", str(tmp_path / "o.csv")])
        == 2
    )
    assert "line 1: 2 columns" in capsys.readouterr().err
    good = tmp_path / "good.csv"
    good.write_text("o.png,a.png,b.png\n")
    oracle = tmp_path / "oracle.csv"
    oracle.write_text("o.png,a.png,b.png,2\n")
    code = clic_job.main(
        [
            "--csv",
            str(good),
            "--images",
            str(tmp_path),
            "--output",
            str(tmp_path / "o.csv"),
            "--oracle",
            str(oracle),
        ]
    )
    assert code == 2
    assert "T must be 0 (A closer) or 1" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- pure parts


def test_accuracy_on_the_full_oracle_matches_clics_formula():
    oracle_text = clic_file("oracle.csv").read_text()
    oracle = clic.parse_csv(oracle_text, labelled=True)
    rng = np.random.default_rng(0)
    candidates = {
        "random": rng.integers(0, 2, len(oracle)),
        "all A": np.zeros(len(oracle), dtype=int),
        "oracle": oracle["t"].to_numpy(),
    }
    for name, t in candidates.items():
        text = clic.submission_text(oracle, t)
        score = clic.accuracy(clic.parse_csv(text, labelled=True), oracle)
        per_row, distinct = independent_accuracy(text, oracle_text)
        assert score.accuracy == pytest.approx(per_row, abs=1e-12), name
        assert score.accuracy_distinct == pytest.approx(distinct, abs=1e-12), name
        assert score.rows == 5220 and score.matches == round(per_row * 5220)
        assert sum(score.confusion.values()) == 5220
        assert sum(b["rows"] for b in score.by_count) == 5220
    # duplicates and conflicts: every row counts, so even the labels themselves miss some rows
    assert (
        clic.accuracy(clic.parse_csv(clic.submission_text(oracle, oracle["t"].to_numpy())), oracle).accuracy
        < 1
    )
    score = clic.accuracy(oracle, oracle)
    assert score.duplicated_triplets > 0 and score.conflicting_triplets > 0
    assert score.ceiling == pytest.approx(0.984, abs=0.001)  # the README's "about 98.4% at best"


def test_ties_reversed_rows_and_identical_images():
    triplets = pd.DataFrame(
        {
            "original": ["o", "o", "o", "o", "p"],
            "file_a": ["a", "b", "a", "c", "x"],
            "file_b": ["b", "a", "a", "a", "y"],
        }
    )
    groups = clic.build_groups(triplets, "/imgs")
    assert [g["pairs"] for g in groups] == [[["a", "b"], ["c", "a"]], [["x", "y"]]]
    assert [d["dist_uri"] for d in groups[0]["dists"]] == ["/imgs/a", "/imgs/b", "/imgs/c"]
    assert groups[0]["ref_uri"] == "/imgs/o"
    pairs = pd.DataFrame({"ref_id": ["o", "o"], "a_id": ["a", "c"], "b_id": ["b", "a"], "p_a": [0.8, 0.5]})
    p = clic.row_probabilities(triplets, pairs)
    np.testing.assert_allclose(p[:4], [0.8, 0.2, 0.5, 0.5])
    assert np.isnan(p[4])  # p's pair was never scored
    assert list(clic.decide(p)) == [
        0,
        1,
        0,
        0,
        0,
    ]  # a tie and an unscored row go to A, as CLIC's PSNR baseline
    assert clic.submission_text(triplets, clic.decide(p)).splitlines()[1] == "o,b,a,1"


def test_csv_parsing():
    df = clic.parse_csv("OriginalFile,FileA,FileB,T\n o.png , a.png,b.png,1\n\n", labelled=None)
    assert df.values.tolist() == [["o.png", "a.png", "b.png", 1]]
    with pytest.raises(clic.ClicFormatError, match="line 2: an empty file name"):
        clic.parse_csv("o,a,b\no,,b\n")
    with pytest.raises(clic.ClicFormatError, match="line 2: 4 columns, expected 3"):
        clic.parse_csv("o,a,b\no,a,b,1\n")
    with pytest.raises(clic.ClicFormatError, match="expected 4"):
        clic.parse_csv("o,a,b\n", labelled=True)
