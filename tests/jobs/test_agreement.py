"""`prfeval agreement` end to end on a hand-made results folder: judges from the pairs and images tables, the
figures against hand computations, the outputs, and unusable input."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from jobs import agreement as job
from pipeline.io import schemas, tables


def results_folder(tmp_path):
    res = tmp_path / "results"
    imgs = []
    for ref in ("r1", "r2"):
        for i, (codec, setting, nbytes, psnr) in enumerate(
            [("jpeg", "q=50", 1000, 30.0), ("jpeg", "q=90", 3000, 40.0), ("webp", "q=70", 2000, 35.0)]
        ):
            imgs.append(
                {
                    "run_id": "run",
                    "ref_id": ref,
                    "dist_id": f"{ref}-{i}",
                    "ref_uri": str(tmp_path / f"{ref}.png"),
                    "dist_uri": str(tmp_path / f"{ref}-{i}.png"),
                    "codec": codec,
                    "setting": setting,
                    "bytes": nbytes,
                    "bpp": nbytes * 8 / 4096,
                    "psnr": psnr,
                }
            )
    pairs = [
        {
            "run_id": "run",
            "ref_id": ref,
            "a_id": f"{ref}-{a}",
            "b_id": f"{ref}-{b}",
            "p_a": p,
            "model": "prfnet-tiny",
        }
        for ref in ("r1", "r2")
        for a, b, p in ((0, 1, 0.2), (0, 2, 0.4), (1, 2, 0.9))
    ]
    tables.write_parquet(str(res / "images" / "g.parquet"), schemas.conform(imgs, schemas.IMAGES))
    tables.write_parquet(str(res / "pairs" / "g.parquet"), schemas.conform(pairs, schemas.PAIRS))
    return str(res)


def triplets(tmp_path, rows):
    df = pd.DataFrame(rows, columns=["ref_uri", "a_uri", "b_uri", "n_a", "n_b"])
    uri = str(tmp_path / "triplets.parquet")
    tables.write_parquet(uri, pa.Table.from_pandas(df, preserve_index=False))
    return uri


def test_agreement_command(tmp_path, capsys):
    res = results_folder(tmp_path)
    t = lambda r, a, b, na, nb: (f"{r}.png", f"{r}-{a}.png", f"{r}-{b}.png", na, nb)  # noqa: E731
    # people: q90 > webp > q50, mostly
    uri = triplets(
        tmp_path, [t("r1", 0, 1, 1, 3), t("r1", 0, 2, 2, 2), t("r2", 1, 2, 3, 0), t("r2", 2, 0, 1, 1)]
    )
    out = str(tmp_path / "out")
    assert job.main(["--triplets", uri, "--results", res, "--output", out, "--n-boot", "50"]) == 0
    summary = json.loads((tmp_path / "out" / "agreement.json").read_text())
    by = {(r["judge"], r["group"]): r for r in summary["agreement"]}
    # ceiling: 3 + 2 (tie) + 3 + 1 (tie) = 9 of 4 + 4 + 3 + 2 = 13
    assert by[("majority ceiling", "all")]["agreement"] == pytest.approx(9 / 13)
    # PRFNet: b, b (p 0.4 -> webp), a (0.9), row 4 is webp vs q50 reversed: p = 1 - 0.4 -> a: 3 + 2 + 3 + 1 = 9
    prf = next(k for k in by if k[0].startswith("prfnet") and k[1] == "all")
    assert by[prf]["agreement"] == pytest.approx(9 / 13)
    # psnr and file size prefer q90 > webp > q50 everywhere: the same decisions
    assert by[("psnr", "all")]["agreement"] == pytest.approx(9 / 13)
    assert by[("file size", "all")]["agreement"] == pytest.approx(9 / 13)
    assert ("psnr", "pairing: cross encoder") in by
    assert list(summary["left_out"].values()) == [0]
    assert ("psnr_y", "all") not in by  # a declared metric column without values is no judge
    for name in ("agreement.parquet", "rank_correlation.parquet", "agreement.md"):
        assert (tmp_path / "out" / name).is_file()
    assert "majority ceiling: 0.692" in capsys.readouterr().out


def test_unusable_triplets(tmp_path, capsys):
    res = results_folder(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("ref_uri,a_uri\nx,y\n")
    assert job.main(["--triplets", str(bad), "--results", res, "--output", str(tmp_path / "o")]) == 2
    assert "missing column" in capsys.readouterr().err
    none = triplets(tmp_path, [("x.png", "y.png", "z.png", 1, 0)])
    assert job.main(["--triplets", none, "--results", res, "--output", str(tmp_path / "o")]) == 2
    assert "no triplet's images were found" in capsys.readouterr().err


def test_agreement_on_s3(s3, tmp_path):
    """Results read from and outputs written to S3 (the HTML page included)."""
    local = results_folder(tmp_path)
    s3.fs.put(local, s3.uri("results"), recursive=True)
    t = lambda r, a, b, na, nb: (f"{r}.png", f"{r}-{a}.png", f"{r}-{b}.png", na, nb)  # noqa: E731
    uri = triplets(tmp_path, [t("r1", 0, 1, 1, 3), t("r2", 1, 2, 3, 0), t("r2", 2, 0, 1, 1)])
    out = s3.uri("agreement")
    assert (
        job.main(["--triplets", uri, "--results", s3.uri("results"), "--output", out, "--n-boot", "20"]) == 0
    )
    summary = json.loads(s3.fs.cat(f"{out}/agreement.json"))
    by = {(r["judge"], r["group"]): r for r in summary["agreement"]}
    assert by[("majority ceiling", "all")]["agreement"] == pytest.approx((3 + 3 + 1) / 9)
    page = s3.fs.cat(f"{out}/agreement.html").decode()
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert s3.fs.exists(f"{out}/plots/agreement.svg")


# ----------------------------------------------------------------------------------------------------------------
# end to end: a study import scored on the pairs people compared; CLIC 2021's rows on stand-in images

HERE = Path(__file__).resolve().parent
MUCPED23 = HERE.parents[1].parent / "shared" / "data" / "mucped23"
ORIGINALS = ["1025469", "1044329", "6292444"]
METHODS = [
    "libjpeg-turbo-q55-yuv420",
    "libjpeg-turbo-q90-yuv444",
    "mozjpeg-q70-yuv420",
    "mozjpeg-q90-yuv444",
    "jpegli-q70-yuv444",
    "jpegli-q85-yuv420",
]


def _module(name: str):
    """Another test module's helpers (the stand-in images of test_clic, the browser of test_report)."""
    spec = importlib.util.spec_from_file_location(f"_agreement_{name}", HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def hand_agreement(trip: pd.DataFrame, prefer_a: np.ndarray) -> float:
    """Σ answers agreed with / Σ answers, a tie (prefer_a == 0.5) counting half, written from the definition."""
    agreed = 0.0
    for n_a, n_b, p in zip(trip["n_a"], trip["n_b"], prefer_a, strict=True):
        agreed += n_a if p > 0.5 else n_b if p < 0.5 else (n_a + n_b) / 2
    return agreed / (trip["n_a"] + trip["n_b"]).sum()


@pytest.mark.slow
@pytest.mark.skipif(not (MUCPED23 / "answers.csv").is_file(), reason=f"mucped23 data not found at {MUCPED23}")
def test_study_import_then_agreement_on_the_pairs_people_compared(ray_local, tmp_path, capsys):
    from jobs import study

    imported = tmp_path / "import"
    assert study.main(["import", "--answers", str(MUCPED23 / "answers.csv"), "--methods",
                       str(MUCPED23 / "methods.csv"), "--refs", str(MUCPED23 / "refs"), "--reference-files",
                       str(MUCPED23 / "reproduced_bytes.csv"), "--output", str(imported), "--originals",
                       ",".join(ORIGINALS), "--methods-only", ",".join(METHODS), "--executor", "local",
                       "--no-progress"]) == 0  # fmt: skip
    trip = pd.read_parquet(imported / "triplets.parquet")
    out, work = tmp_path / "agreement", tmp_path / "scored"
    argv = ["--triplets", str(imported / "triplets.parquet"), "--manifest", str(imported / "manifest.parquet"),
            "--score", str(work), "--output", str(out), "--n-boot", "200", "--no-progress",
            "--anchor", "jpeg", "--test", "mozjpeg"]  # fmt: skip
    assert job.main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "agreement.json").read_text())
    by = {(r["judge"], r["group"]): r for r in summary["agreement"]}

    # only the pairs people compared were scored, each once, with the manifest's method on every image
    pairs, images = pd.read_parquet(work / "pairs"), pd.read_parquet(work / "images")
    assert len(pairs) == len(trip)
    assert set(images["method"]) == set(METHODS)
    # the figures against hand computations on the triplets
    ceiling = np.maximum(trip["n_a"], trip["n_b"]).where(trip["n_a"] != trip["n_b"], trip["votes"] / 2)
    assert by[("majority ceiling", "all")]["agreement"] == pytest.approx(ceiling.sum() / trip["votes"].sum())
    size = images.set_index("dist_uri")["bytes"]
    sa = size.reindex([str(imported / u) for u in trip["a_uri"]]).to_numpy()
    sb = size.reindex([str(imported / u) for u in trip["b_uri"]]).to_numpy()
    by_size = np.where(sa > sb, 1.0, np.where(sa < sb, 0.0, 0.5))
    assert by[("file size", "all")]["agreement"] == pytest.approx(hand_agreement(trip, by_size))
    p = {(a, b): v for a, b, v in zip(pairs["a_id"], pairs["b_id"], pairs["p_a"], strict=True)}
    p_a = np.array(
        [p[(a, b)] if (a, b) in p else 1 - p[(b, a)] for a, b in zip(trip["a_id"], trip["b_id"], strict=True)]
    )
    prf = next(k for k in by if k[0].startswith("prfnet") and k[1] == "all")
    assert by[prf]["agreement"] == pytest.approx(hand_agreement(trip, p_a))
    lo, hi = by[prf]["ci_low"], by[prf]["ci_high"]
    assert lo <= by[prf]["agreement"] <= hi
    # method level over the study's method names; the BD-rate of mozjpeg against libjpeg-turbo on each axis
    ranks = {r["judge"]: r for r in summary["rank_correlation"]}
    assert all(r["n_methods"] == len(METHODS) for r in ranks.values())
    scores = pd.read_parquet(out / "method_scores.parquet")
    assert sorted(scores["method"]) == sorted(METHODS)
    from scipy import stats

    rho = stats.spearmanr(scores["people"], scores["file size"]).statistic
    assert ranks["file size"]["spearman"] == pytest.approx(rho)
    assert {r["judge"] for r in summary["bd_rate"]} >= {"people", "file size"}
    assert "majority ceiling:" in printed and "Spearman" in printed
    # the page, in headless Chromium: no request leaves it, both figures load, the tables are there
    report = _module("test_report")
    binary = report.chromium_binary()
    if binary is None:
        pytest.skip("Chromium is not installed")
    browser = report.DevTools(binary, tmp_path / "profile")
    try:
        url = (out / "agreement.html").as_uri()
        tab, requests = browser.open(url)
        assert [u for u in requests if u != url and not u.startswith("data:")] == []
        facts = browser.evaluate(tab, PAGE_FACTS)
    finally:
        browser.close()
    assert facts["scripts"] == 0 and facts["title"] == "prfeval agreement"
    assert len(facts["figures"]) == 2 and all(f["loaded"] and f["width"] > 100 for f in facts["figures"])
    assert facts["judges"][0] == "majority ceiling" and facts["ranks"] == len(ranks)


PAGE_FACTS = """(() => ({
  title: document.title,
  scripts: document.querySelectorAll('script').length,
  figures: [...document.querySelectorAll('figure img')].map(i => ({
    loaded: i.complete && i.naturalWidth > 0, width: i.getBoundingClientRect().width })),
  judges: [...document.querySelectorAll('#agreement-table tbody tr')].map(r => r.cells[0].textContent),
  ranks: document.querySelectorAll('#rank-table tbody tr').length,
}))()"""


@pytest.mark.slow
def test_agreement_on_clic_2021_rows_with_stand_in_images(ray_local, tmp_path, capsys):
    clic_test = _module("test_clic")
    from pipeline import clic

    oracle_file = clic_test.clic_file("oracle.csv")
    oracle = clic.read_csv(str(oracle_file), labelled=True)
    originals = clic_test.choose_originals(oracle)
    keep = oracle["original"].isin(originals).to_numpy()
    lines = oracle_file.read_text().splitlines()
    (tmp_path / "oracle.csv").write_text("\n".join(t for t, k in zip(lines, keep, strict=True) if k) + "\n")
    (tmp_path / "images").mkdir()
    clic_test.write_standins(tmp_path / "images", oracle[keep], originals)
    out = tmp_path / "agreement"
    argv = ["--triplets", str(tmp_path / "oracle.csv"), "--images", str(tmp_path / "images"),
            "--score", str(tmp_path / "scored"), "--output", str(out), "--n-boot", "100", "--no-progress"]  # fmt: skip
    assert job.main(argv) == 0
    summary = json.loads((out / "agreement.json").read_text())
    by = {(r["judge"], r["group"]): r for r in summary["agreement"]}
    # by hand from the CSV rows: answers per original and unordered pair, T = 0 when A is closer
    votes: dict = {}
    for o, a, b, t in oracle[keep][["original", "file_a", "file_b", "t"]].itertuples(index=False):
        if a == b:
            continue
        key = (o, min(a, b), max(a, b))
        first_closer = (t == 0) == (a == min(a, b))
        votes.setdefault(key, [0, 0])[0 if first_closer else 1] += 1
    n = sum(sum(v) for v in votes.values())
    ceiling = sum(max(v) if v[0] != v[1] else v[0] for v in votes.values()) / n
    assert by[("majority ceiling", "all")]["agreement"] == pytest.approx(ceiling)
    assert by[("majority ceiling", "all")]["n_pairs"] == len(votes)
    prf = next(k for k in by if k[0].startswith("prfnet") and k[1] == "all")
    assert by[prf]["n_missing"] == 0 and by[prf]["agreement"] > 0.5
    assert summary["rank_correlation"] == [] and "no method-level figures" in summary["rank_note"]
    assert (out / "agreement.html").is_file()
