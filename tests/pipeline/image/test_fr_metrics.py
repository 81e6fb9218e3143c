"""The metrics beyond the classic three, each against an independent implementation or published values.

- SSIMULACRA2 against the original tool (cloudinary/ssimulacra2, "SSIMULACRA 2.1") on the committed 128 x 128 JPEG
  pairs of tests/data/metrics (scores recorded once by make_pairs.py there): within 0.75 points (0.15-0.50
  observed; the unmodified PyPI port is off by up to 40 points on these pairs, see pipeline/image/fr_metrics.py).
- Butteraugli against butteraugli_main's outputs recorded for the same pairs (1e-6), 0 for identical images, and
  ordered by JPEG quality.
- CIEDE2000's per-pixel function against the published test data of Sharma, Wu and Dalal (2005), 1e-4.
- PSNR of the Y, Cb and Cr planes against scikit-image's rgb2ycbcr + peak_signal_noise_ratio (1e-6 dB); Y equals
  the existing psnr_y.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from pipeline.image import fr_metrics, metrics
from pipeline.image.metrics import METRICS, ReferenceStats, compute_all

DATA = Path(__file__).resolve().parents[2] / "data" / "metrics"
S2_TOLERANCE = 0.75


def _rgb(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def reference_pairs() -> list[tuple[dict, np.ndarray, np.ndarray]]:
    records = json.loads((DATA / "reference_scores.json").read_text())["pairs"]
    return [(r, _rgb(DATA / r["reference"]), _rgb(DATA / r["distorted"])) for r in records]


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_ssimulacra2_matches_the_original_tool(reference_pairs):
    assert len(reference_pairs) >= 4
    for record, ref, dist in reference_pairs:
        ours = metrics.ssimulacra2(ref, dist)
        assert ours == pytest.approx(record["ssimulacra2"], abs=S2_TOLERANCE), record["distorted"]


def test_ssimulacra2_identical_and_small():
    img = np.ascontiguousarray(data.astronaut()[:64, :80])
    assert metrics.ssimulacra2(img, img.copy()) == pytest.approx(100.0)
    tiny = img[:7, :7]
    assert compute_all(tiny, _jpeg(tiny, 20), ["ssimulacra2"]) == {"ssimulacra2": None}  # under min_size
    assert compute_all(img[:8, :8], _jpeg(img[:8, :8], 20), ["ssimulacra2"])["ssimulacra2"] is not None


def test_ssimulacra2_cached_reference_gives_the_same_number(reference_pairs):
    _, ref, dist = reference_pairs[0]
    stats = ReferenceStats(ref)
    first = metrics.ssimulacra2(stats, dist)
    assert metrics.ssimulacra2(stats, dist) == first == metrics.ssimulacra2(ref, dist)


needs_butteraugli = pytest.mark.skipif(
    fr_metrics.butteraugli_program() is None, reason="butteraugli_main (libjxl-devtools) not installed"
)


@needs_butteraugli
def test_butteraugli_matches_the_recorded_program_outputs(reference_pairs):

    for record, ref, dist in reference_pairs:
        got = compute_all(ReferenceStats(ref), dist, ["butteraugli", "butteraugli_3norm"])
        assert got["butteraugli"] == pytest.approx(record["butteraugli_max"], abs=1e-6)
        assert got["butteraugli_3norm"] == pytest.approx(record["butteraugli_3norm"], abs=1e-6)
        assert got["butteraugli_3norm"] <= got["butteraugli"]


@needs_butteraugli
def test_butteraugli_zero_for_identical_and_ordered_by_quality():
    ref = np.ascontiguousarray(data.coffee()[:96, :128])
    noisy = ref.copy()
    noisy[0, 0] ^= 1  # not identical, so the program runs
    assert metrics.butteraugli(ref, ref.copy()) == 0.0
    stats = ReferenceStats(ref)
    assert metrics.butteraugli(stats, noisy) < 0.5
    by_quality = [metrics.butteraugli_3norm(stats, _jpeg(ref, q)) for q in (10, 40, 90)]
    assert by_quality == sorted(by_quality, reverse=True)


def test_butteraugli_unavailable_without_the_program(monkeypatch):
    monkeypatch.setenv(fr_metrics.BUTTERAUGLI_ENV, "/nonexistent/butteraugli_main")
    why = METRICS["butteraugli"].why_unavailable()
    assert why and "libjxl-devtools" in why
    with pytest.raises(metrics.MetricUnavailableError, match=r"butteraugli.*unavailable"):
        metrics.select("psnr,butteraugli")
    img = np.ascontiguousarray(data.coffee()[:32, :32])
    with pytest.raises(fr_metrics.ToolMissing, match="libjxl-devtools"):
        metrics.butteraugli(img, _jpeg(img, 20))


def test_parse_butteraugli_output():
    assert fr_metrics.parse_butteraugli("5.5344071388\n3-norm: 2.054039\n") == (5.5344071388, 2.054039)
    with pytest.raises(RuntimeError, match="unexpected"):
        fr_metrics.parse_butteraugli("oops")


# Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes, supplementary test
# data, and mathematical observations", Table 1: (L1, a1, b1), (L2, a2, b2), ΔE00.
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_per_pixel_matches_sharma_test_data():
    lab1 = np.array([p[0] for p in SHARMA])
    lab2 = np.array([p[1] for p in SHARMA])
    expected = np.array([p[2] for p in SHARMA])
    np.testing.assert_allclose(fr_metrics.ciede2000_map(lab1, lab2), expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(fr_metrics.ciede2000_map(lab2, lab1), expected, atol=1e-4, rtol=0)  # symmetric


def test_ciede2000_mean_over_pixels(reference_pairs):
    from skimage.color import deltaE_ciede2000, rgb2lab

    _, ref, dist = reference_pairs[1]
    expected = float(np.mean(deltaE_ciede2000(rgb2lab(ref / 255.0), rgb2lab(dist / 255.0))))
    assert metrics.ciede2000(ref, dist) == pytest.approx(expected, abs=1e-12)
    assert metrics.ciede2000(ReferenceStats(ref), dist) == pytest.approx(expected, abs=1e-12)
    assert metrics.ciede2000(ref, ref.copy()) == 0.0


def test_plane_psnr_matches_skimage(reference_pairs):
    for _, ref, dist in reference_pairs:
        y_ref, y_dist = rgb2ycbcr(ref), rgb2ycbcr(dist)
        for k, name in enumerate(("psnr_y", "psnr_cb", "psnr_cr")):
            expected = peak_signal_noise_ratio(y_ref[..., k], y_dist[..., k], data_range=255)
            assert compute_all(ref, dist, [name])[name] == pytest.approx(expected, abs=1e-6), name
        y_mse = fr_metrics.plane_mse(fr_metrics.ycbcr_bt601(ref), fr_metrics.ycbcr_bt601(dist), "y")
        assert 10 * math.log10(255**2 / y_mse) == pytest.approx(metrics.psnr_y(ref, dist), abs=1e-9)
    np.testing.assert_allclose(fr_metrics.ycbcr_bt601(ref), rgb2ycbcr(ref), atol=1e-10, rtol=0)
    assert metrics.psnr_cb(ref, ref.copy()) == math.inf


def test_every_builtin_has_its_metadata(reference_pairs):
    _, ref, dist = reference_pairs[2]
    runnable = [n for n, i in METRICS.items() if i.why_unavailable() is None]
    values = compute_all(ReferenceStats(ref), dist, runnable)
    for name in runnable:
        info = METRICS[name]
        assert info.implementation and info.version_string() and info.title and info.description
        assert not info.needs_gpu
        lo, hi = info.range
        if values[name] is not None:
            assert lo <= values[name] <= hi, name
        assert compute_all(ref, ref.copy(), [name])[name] in (info.best, None), name
        described = info.describe()
        assert described["higher_is_better"] is info.higher_is_better and described["unit"] == info.unit
    assert not METRICS["butteraugli"].higher_is_better and not METRICS["ciede2000"].higher_is_better
    assert METRICS["ssimulacra2"].higher_is_better
