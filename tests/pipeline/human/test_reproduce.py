"""Do regenerated images match the study (pipeline.human.reproduce)? Per-file sha256 or size where known, else the
mean bpp against the subset-corrected study mean, within a tolerance; a verdict and a reason per method."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.human import reproduce as rp
from pipeline.human import study

MUCPED23 = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "mucped23"
needs_mucped23 = pytest.mark.skipif(
    not (MUCPED23 / "reproduced_bytes.csv").is_file(), reason=f"mucped23 data not found at {MUCPED23}"
)


def test_subset_correction_formula():
    assert rp.MUCPED23_SUBSET.ratio(1.0) == pytest.approx(0.9368)
    assert rp.MUCPED23_SUBSET.expected(2.0) == pytest.approx(2.0 * (0.9368 - 0.0075 * math.log(2.0)))


def regenerated(method: str, sizes: list[int], shas: list[str] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "method": method,
            "original": [f"o{i}" for i in range(len(sizes))],
            "bytes": sizes,
            "bpp": rp.bpp_of(sizes, 512, 512),
        }
    )
    if shas is not None:
        df["sha256"] = shas
    return df


def test_mean_bpp_within_and_outside_the_tolerance():
    files = pd.concat([regenerated("good", [32768, 32768]), regenerated("bad", [40000, 40000])])
    # both files of 32768 bytes at 512 x 512 are 1.0 bpp; ask for 1.0 after correction, with a 0.5 % tolerance
    study_bpp = {"good": 1.0 / 0.9368, "bad": 1.0 / 0.9368}
    corr = rp.SubsetCorrection(0.9368, 0.0)
    v = rp.check_methods(files, study_bpp, correction=corr).set_index("method")
    assert v.loc["good", "verdict"] == rp.OK and v.loc["good", "check"] == "mean bpp"
    assert v.loc["good", "relative_error"] == pytest.approx(0.0, abs=1e-12)
    assert v.loc["bad", "verdict"] == rp.REFUSED
    assert "+22.07%" in v.loc["bad", "reason"] and "outside ±0.5%" in v.loc["bad", "reason"]
    loose = rp.check_methods(files, study_bpp, correction=corr, tolerance=0.25).set_index("method")
    assert loose.loc["bad", "verdict"] == rp.OK
    raw = rp.check_methods(files, {"good": 1.0}, correction=None).set_index("method")
    assert raw.loc["good", "verdict"] == rp.OK and "the study mean" in raw.loc["good", "reason"]


def test_per_file_checks_and_methods_without_files():
    files = pd.concat(
        [regenerated("same", [100, 200], ["s1", "s2"]), regenerated("differs", [100, 200], ["s1", "xx"])]
    )
    known = pd.DataFrame(
        {
            "method": ["same", "same", "differs", "differs", "short"],
            "original": ["o0", "o1", "o0", "o1", "o0"],
            "bytes": [100, 200, 100, 200, 5],
            "sha256": ["s1", "s2", "s1", "s2", "q"],
        }
    )
    study_bpp = {"same": 5.0, "differs": 5.0, "short": 5.0, "none": 1.0}
    v = rp.check_methods(
        files, study_bpp, reference_files=known, reasons={"none": "no encoder for family x"}
    ).set_index("method")
    assert v.loc["same", "verdict"] == rp.OK  # the mean bpp is far off, but every file is the same
    assert v.loc["same", "reason"] == "all 2 file(s) equal in sha256"
    assert v.loc["differs", "verdict"] == rp.REFUSED
    assert v.loc["differs", "reason"] == "1 of 2 file(s) differ in sha256 (o1)"
    assert (v.loc["differs", "n_checked"], v.loc["differs", "n_mismatched"]) == (2, 1)
    assert v.loc["short", "reason"] == "no files"
    assert v.loc["none", "reason"] == "no encoder for family x" and v.loc["none", "verdict"] == rp.REFUSED
    assert rp.kept(v.reset_index()) == ["same"]


def test_leave_out_counts():
    pairs = pd.DataFrame({"a": ["x", "x", "y"], "b": ["y", "z", "z"], "n_a": [1, 2, 0], "n_b": [1, 0, 3]})
    verdicts = pd.DataFrame({"method": ["x", "y", "z"], "verdict": [rp.OK, rp.OK, rp.REFUSED]})
    kept, counts = rp.leave_out(pairs, verdicts)
    assert kept[["a", "b"]].values.tolist() == [["x", "y"]]
    assert counts == {"pairs": 2, "answers": 5, "methods": 1}


@needs_mucped23
def test_mucped23_bit_exact_files_pass_both_checks():
    """The 15 bit-exact methods pass the sha256 check, and their 33-image means also land within 0.5 % of the
    subset-corrected study means (they were what the correction was fitted on), while the raw means are 6-7.5 %
    below the 49-image means."""
    methods = study.read_methods(str(MUCPED23 / "methods.csv"))
    files = pd.read_csv(MUCPED23 / "reproduced_bytes.csv", dtype={"originalName": str})
    files = files.rename(columns={"originalName": "original", "jpeg_sha256": "sha256"})
    files["bpp"] = rp.bpp_of(files["bytes"], 512, 512)
    study_bpp = dict(zip(methods["method"], methods["study_bpp"], strict=True))
    v = rp.check_methods(files, study_bpp, reference_files=files).set_index("method")
    exact = sorted(files["method"].unique())
    assert (v.loc[exact, "verdict"] == rp.OK).all()
    assert (v.loc[exact, "n_checked"] == 33).all()
    jpegli = [m for m in study_bpp if m.startswith("jpegli")]
    assert (v.loc[jpegli, "verdict"] == rp.REFUSED).all() and len(jpegli) == 16
    by_bpp = rp.check_methods(files, {m: study_bpp[m] for m in exact}).set_index("method")
    assert (by_bpp["verdict"] == rp.OK).all()
    assert np.abs(by_bpp["relative_error"]).max() < 0.005
    raw = rp.check_methods(files, {m: study_bpp[m] for m in exact}, correction=None)
    assert raw["relative_error"].between(-0.076, -0.060).all()
    assert (raw["verdict"] == rp.REFUSED).all()
