"""`prfeval agreement` end to end on a hand-made results folder: judges from the pairs and images tables, the
figures against hand computations, the outputs, and unusable input."""

from __future__ import annotations

import json

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
