"""BD-rate: the closed form, the independent ``bjontegaard`` package on real JPEG/WebP curves, and every reason.

Tolerances: the constant-factor case is exact up to rounding (1e-9 %). Against ``bjontegaard`` (1.3, method
"pchip"), 1e-8 % for BD-rate and 1e-10 dB for BD-PSNR: it interpolates log10(rate) with the same scipy PCHIP and
integrates it exactly over the same overlap, and both the log base and the abscissa scaling cancel (see the
module docstring), so only rounding differs.
"""

from __future__ import annotations

import io

import bjontegaard
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage import data

from pipeline.image.metrics import psnr
from pipeline.stats.bdrate import bd_quality, bd_rate, bd_rate_images, bd_rate_per_image

ANCHOR_RATE = np.array([0.25, 0.5, 0.9, 1.6, 2.8])
ANCHOR_PSNR = np.array([28.0, 31.5, 34.0, 37.2, 40.1])


def _encode_curve(img: np.ndarray, fmt: str, qualities: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, PSNR) of real encodes with Pillow."""
    rates, quality = [], []
    h, w = img.shape[:2]
    for q in qualities:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format=fmt, quality=q)
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        rates.append(len(buf.getvalue()) * 8 / (h * w))
        quality.append(psnr(img, decoded))
    return np.array(rates), np.array(quality)


@pytest.fixture(scope="module")
def real_curves() -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    curves = {}
    for name in ("astronaut", "chelsea"):
        img = np.ascontiguousarray(getattr(data, name)())
        curves[name] = {
            "jpeg": _encode_curve(img, "JPEG", [15, 30, 50, 70, 85, 95]),
            "webp": _encode_curve(img, "WEBP", [10, 25, 45, 65, 80, 95]),
        }
    return curves


@pytest.mark.parametrize("k", [0.5, 0.8, 1.0, 1.37, 2.0])
def test_constant_rate_factor_gives_exact_answer(k):
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, k * ANCHOR_RATE, ANCHOR_PSNR)
    assert result.reason is None and result.ok
    assert result.value == pytest.approx((k - 1) * 100, abs=1e-9)
    assert result.interval == (28.0, 40.1)


def test_constant_quality_shift_gives_exact_bd_quality():
    result = bd_quality(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE, ANCHOR_PSNR + 0.75)
    assert result.value == pytest.approx(0.75, abs=1e-12)
    # a curve shifted up in quality needs fewer bits: BD-rate negative
    assert bd_rate(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE, ANCHOR_PSNR + 0.75).value < 0


def test_point_order_does_not_matter():
    order = np.array([3, 0, 4, 1, 2])
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, 0.7 * ANCHOR_RATE[order], ANCHOR_PSNR[order])
    assert result.value == pytest.approx(-30.0, abs=1e-9)


def test_partial_overlap_integrates_over_the_common_range_only():
    # the test curve lacks the anchor's lowest point: the integral covers [31.5, 40.1]; the factor 0.7 holds at
    # the shared points, and the PCHIP end slopes of the shorter curve differ slightly, hence not exactly -30
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, 0.7 * ANCHOR_RATE[1:], ANCHOR_PSNR[1:])
    assert result.interval == (31.5, 40.1)
    assert result.value == pytest.approx(-30.0, abs=0.5)


def test_agrees_with_bjontegaard_package_on_real_codec_curves(real_curves):
    for name, curves in real_curves.items():
        (r_jpeg, q_jpeg), (r_webp, q_webp) = curves["jpeg"], curves["webp"]
        ours = bd_rate(r_jpeg, q_jpeg, r_webp, q_webp)
        theirs = bjontegaard.bd_rate(r_jpeg, q_jpeg, r_webp, q_webp, method="pchip", min_overlap=0)
        assert ours.ok, (name, ours.reason)
        assert ours.value == pytest.approx(theirs, abs=1e-8), name
        # WebP beats baseline JPEG on these photos at equal PSNR
        assert ours.value < 0, name
        ours_q = bd_quality(r_jpeg, q_jpeg, r_webp, q_webp)
        theirs_q = bjontegaard.bd_psnr(r_jpeg, q_jpeg, r_webp, q_webp, method="pchip", min_overlap=0)
        assert ours_q.value == pytest.approx(theirs_q, abs=1e-10), name
        # swapping anchor and test integrates over the same overlap, so the mean log-ratio just flips sign
        back = bd_rate(r_webp, q_webp, r_jpeg, q_jpeg).value
        assert (1 + ours.value / 100) * (1 + back / 100) == pytest.approx(1.0, abs=1e-12)


def test_reason_fewer_than_4_points():
    result = bd_rate(ANCHOR_RATE[:3], ANCHOR_PSNR[:3], ANCHOR_RATE, ANCHOR_PSNR)
    assert result.value is None and result.reason == "fewer than 4 points (anchor curve: 3)"
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE[:2], ANCHOR_PSNR[:2])
    assert result.reason == "fewer than 4 points (test curve: 2)"
    # duplicates do not count twice
    dup_r = np.r_[ANCHOR_RATE[:3], ANCHOR_RATE[:3]]
    dup_q = np.r_[ANCHOR_PSNR[:3], ANCHOR_PSNR[:3]]
    assert bd_rate(ANCHOR_RATE, ANCHOR_PSNR, dup_r, dup_q).reason == "fewer than 4 points (test curve: 3)"


def test_duplicates_are_dropped_with_a_note():
    r = np.r_[ANCHOR_RATE, ANCHOR_RATE[1]]
    q = np.r_[ANCHOR_PSNR, ANCHOR_PSNR[1]]
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, 2 * r, q)
    assert result.value == pytest.approx(100.0, abs=1e-9)
    assert result.notes == ("dropped 1 duplicate point(s) from the test curve",)


def test_reason_no_overlap():
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE * 10, ANCHOR_PSNR + 20)
    assert result.value is None and result.reason == "no overlap in quality"
    # touching at a single point is no overlap either
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE * 10, ANCHOR_PSNR + (40.1 - 28.0))
    assert result.reason == "no overlap in quality"
    assert bd_quality(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE * 100, ANCHOR_PSNR).reason == "no overlap in rate"


def test_reason_non_monotonic():
    bumpy = ANCHOR_PSNR.copy()
    bumpy[3] = 33.0  # quality drops while rate rises
    assert bd_rate(ANCHOR_RATE, bumpy, ANCHOR_RATE, ANCHOR_PSNR).reason == (
        "non-monotonic rate–quality curve (anchor curve)"
    )
    flat = ANCHOR_PSNR.copy()
    flat[4] = flat[3]  # equal quality at two different rates
    assert bd_rate(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE, flat).reason == (
        "non-monotonic rate–quality curve (test curve)"
    )


def test_reason_non_finite_and_lossless_points():
    with_nan = ANCHOR_PSNR.copy()
    with_nan[2] = np.nan
    assert bd_rate(ANCHOR_RATE, ANCHOR_PSNR, ANCHOR_RATE, with_nan).reason == "non-finite values (test curve)"
    bad_rate = ANCHOR_RATE.copy()
    bad_rate[0] = np.inf
    assert (
        bd_rate(bad_rate, ANCHOR_PSNR, ANCHOR_RATE, ANCHOR_PSNR).reason == "non-finite values (anchor curve)"
    )
    zero_rate = ANCHOR_RATE.copy()
    zero_rate[0] = 0.0
    assert (
        bd_rate(zero_rate, ANCHOR_PSNR, ANCHOR_RATE, ANCHOR_PSNR).reason == "non-positive rate (anchor curve)"
    )
    # a lossless point (PSNR = inf) is dropped with a note; the rest of the curve is used
    r = np.r_[ANCHOR_RATE, 12.0]
    q = np.r_[ANCHOR_PSNR, np.inf]
    result = bd_rate(ANCHOR_RATE, ANCHOR_PSNR, 1.5 * r, q)
    assert result.value == pytest.approx(50.0, abs=1e-9)
    assert result.notes == ("dropped 1 point(s) of infinite quality from the test curve",)
    # ...and can leave too few points
    assert bd_rate(r[-4:], q[-4:], ANCHOR_RATE, ANCHOR_PSNR).reason == "fewer than 4 points (anchor curve: 3)"


def test_lower_is_better_metric():
    distortion = 50.0 - ANCHOR_PSNR  # lower is better, decreasing with rate
    result = bd_rate(ANCHOR_RATE, distortion, 0.8 * ANCHOR_RATE, distortion, higher_is_better=False)
    assert result.value == pytest.approx(-20.0, abs=1e-9)
    assert result.interval == pytest.approx((50.0 - 40.1, 50.0 - 28.0))
    assert bd_rate(ANCHOR_RATE, distortion, ANCHOR_RATE, distortion).reason.startswith("non-monotonic")
    shifted = bd_quality(ANCHOR_RATE, distortion, ANCHOR_RATE, distortion - 0.5, higher_is_better=False)
    assert shifted.value == pytest.approx(-0.5, abs=1e-12)  # in the metric's units: test has 0.5 less


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="anchor curve"):
        bd_rate(ANCHOR_RATE, ANCHOR_PSNR[:4], ANCHOR_RATE, ANCHOR_PSNR)


def _table() -> pd.DataFrame:
    """Three images; "fast" needs 0.8x the anchor's rate on every image, "slow" 1.25x; image c is degenerate."""
    rows = []
    factors = {"anchor": 1.0, "fast": 0.8, "slow": 1.25}
    for image, scale in (("a", 1.0), ("b", 1.7), ("c", 1.0)):
        for codec, k in factors.items():
            n = 3 if (image == "c" and codec == "slow") else 5
            for r, q in zip(ANCHOR_RATE[:n], ANCHOR_PSNR[:n], strict=True):
                rows.append({"ref_id": image, "codec": codec, "bpp": k * scale * r, "psnr": q + scale})
    return pd.DataFrame(rows)


def test_bd_rate_images_table():
    per_image = bd_rate_images(_table(), anchor="anchor")
    assert list(per_image.columns) == ["image", "codec", "bd_rate", "reason", "notes"]
    assert len(per_image) == 6
    fast = per_image[per_image.codec == "fast"]
    np.testing.assert_allclose(fast.bd_rate, -20.0, atol=1e-9)
    slow_c = per_image[(per_image.codec == "slow") & (per_image.image == "c")].iloc[0]
    assert np.isnan(slow_c.bd_rate) and slow_c.reason == "fewer than 4 points (test curve: 3)"
    # an image without the anchor
    no_anchor = _table().query("not (ref_id == 'b' and codec == 'anchor')")
    reasons = bd_rate_images(no_anchor, anchor="anchor").set_index(["image", "codec"]).reason
    assert reasons[("b", "fast")] == "no anchor curve"


def test_bd_rate_per_image_summary():
    out = bd_rate_per_image(_table(), anchor="anchor", n_boot=200, seed=1)
    assert out.codec.tolist() == ["fast", "slow"]  # best first
    fast, slow = out.iloc[0], out.iloc[1]
    assert fast.bd_rate == pytest.approx(-20.0, abs=1e-9) and fast.n_images == 3 and fast.n_skipped == 0
    assert fast.ci_low == pytest.approx(-20.0, abs=1e-9) and fast.ci_high == pytest.approx(-20.0, abs=1e-9)
    assert fast.reasons == ""
    assert slow.bd_rate == pytest.approx(25.0, abs=1e-9) and slow.n_images == 2 and slow.n_skipped == 1
    assert slow.reasons == "fewer than 4 points: 1"
    assert set(out.quality) == {"psnr"} and set(out.anchor) == {"anchor"}
    assert out.attrs == {"n_boot": 200, "alpha": 0.05, "seed": 1}


def test_bd_rate_per_image_interval_reflects_spread_over_images():
    rng = np.random.default_rng(0)
    rows = []
    factors = rng.uniform(0.6, 1.0, 30)  # the test codec's saving varies by image
    for i, k in enumerate(factors):
        for codec, f in (("anchor", 1.0), ("test", k)):
            rows += [
                {"ref_id": i, "codec": codec, "bpp": f * r, "psnr": q}
                for r, q in zip(ANCHOR_RATE, ANCHOR_PSNR, strict=True)
            ]
    out = bd_rate_per_image(pd.DataFrame(rows), anchor="anchor", n_boot=500).iloc[0]
    expected = (factors.mean() - 1) * 100
    assert out.bd_rate == pytest.approx(expected, abs=1e-9)
    assert out.ci_low < expected < out.ci_high
    sem = factors.std(ddof=1) / np.sqrt(len(factors)) * 100
    assert out.ci_high - out.ci_low == pytest.approx(2 * 1.96 * sem, rel=0.25)


def test_bd_rate_per_image_bad_input():
    with pytest.raises(ValueError, match="anchor codec 'nope'"):
        bd_rate_per_image(_table(), anchor="nope")
    with pytest.raises(KeyError, match="ms_ssim"):
        bd_rate_per_image(_table(), anchor="anchor", quality_col="ms_ssim")


def test_bd_rate_per_image_codec_never_computable():
    # e.g. MS-SSIM null on small images: every point of "slow" is NaN
    table = _table()
    table.loc[table.codec == "slow", "psnr"] = np.nan
    out = bd_rate_per_image(table, anchor="anchor", n_boot=50).set_index("codec")
    slow = out.loc["slow"]
    assert np.isnan(slow.bd_rate) and np.isnan(slow.ci_low) and np.isnan(slow.ci_high)
    assert slow.n_images == 0 and slow.n_skipped == 3 and slow.reasons == "non-finite values: 3"
    assert out.index.tolist() == ["fast", "slow"]  # not computable goes last
    only_anchor = bd_rate_per_image(table[table.codec == "anchor"], anchor="anchor")
    assert only_anchor.empty and "bd_rate" in only_anchor.columns
