"""Classic metrics against independent implementations on real photos with real JPEG distortion.

Tolerances: PSNR and PSNR-Y 1e-6 dB against scikit-image; MS-SSIM 1e-12 against pytorch-msssim in float64 with
the same Gaussian window, 1e-5 against its defaults (float32 window and arithmetic).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from pytorch_msssim import ms_ssim as reference_ms_ssim
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio

from pipeline.image import metrics
from pipeline.image.metrics import (
    METRICS,
    MetricInfo,
    ReferenceStats,
    compute_all,
    get_metric,
    ms_ssim,
    psnr,
    psnr_y,
)

PHOTOS = ("astronaut", "chelsea", "coffee")  # 512x512, 300x451 (odd width), 400x600
QUALITIES = (10, 40, 85)


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


@pytest.fixture(scope="module")
def photo_pairs() -> list[tuple[str, int, np.ndarray, np.ndarray]]:
    out = []
    for name in PHOTOS:
        ref = np.ascontiguousarray(getattr(data, name)())
        out.extend((name, q, ref, _jpeg(ref, q)) for q in QUALITIES)
    return out


def _nchw(img: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(img.copy()).permute(2, 0, 1).unsqueeze(0).to(dtype)


def test_psnr_matches_skimage(photo_pairs):
    for name, q, ref, dist in photo_pairs:
        expected = peak_signal_noise_ratio(ref, dist, data_range=255)
        assert psnr(ref, dist) == pytest.approx(expected, abs=1e-6), (name, q)


def test_psnr_y_matches_skimage_luma(photo_pairs):
    for name, q, ref, dist in photo_pairs:
        y_ref, y_dist = rgb2ycbcr(ref)[..., 0], rgb2ycbcr(dist)[..., 0]
        expected = peak_signal_noise_ratio(y_ref, y_dist, data_range=255)
        assert psnr_y(ref, dist) == pytest.approx(expected, abs=1e-6), (name, q)
        # and it is a different number from RGB PSNR
        assert psnr_y(ref, dist) != pytest.approx(psnr(ref, dist), abs=1e-3)


def test_luma_is_skimage_rgb2ycbcr():
    img = data.coffee()
    np.testing.assert_allclose(metrics.luma_bt601(img), rgb2ycbcr(img)[..., 0], rtol=0, atol=1e-10)


@pytest.fixture
def one_torch_thread():
    """The reference implementation on one thread: tests share two CPUs, and oversubscribed torch crawls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_ms_ssim_matches_pytorch_msssim(photo_pairs, one_torch_thread):
    window = torch.from_numpy(metrics._WINDOW).view(1, 1, 1, -1).repeat(3, 1, 1, 1)
    for name, q, ref, dist in photo_pairs:
        ours = ms_ssim(ref, dist)
        assert ours is not None and 0.0 < ours < 1.0
        x64, y64 = _nchw(ref, torch.float64), _nchw(dist, torch.float64)
        same_window = reference_ms_ssim(x64, y64, data_range=255, win=window, size_average=True).item()
        assert ours == pytest.approx(same_window, abs=1e-12), (name, q)
        defaults = reference_ms_ssim(
            _nchw(ref, torch.float32), _nchw(dist, torch.float32), data_range=255, size_average=True
        ).item()
        assert ours == pytest.approx(defaults, abs=1e-5), (name, q)


def test_ms_ssim_orders_jpeg_qualities(photo_pairs):
    by_photo: dict[str, list[float]] = {}
    for name, _q, ref, dist in photo_pairs:
        by_photo.setdefault(name, []).append(ms_ssim(ref, dist))
    for name, values in by_photo.items():
        assert values == sorted(values), name  # QUALITIES ascend, so must MS-SSIM


def test_identical_images():
    img = data.astronaut()
    assert psnr(img, img) == math.inf
    assert psnr_y(img, img) == math.inf
    assert ms_ssim(img, img) == 1.0
    assert compute_all(img, img.copy()) == {"psnr": math.inf, "psnr_y": math.inf, "ms_ssim": 1.0}


def test_ms_ssim_none_for_small_images(one_torch_thread):
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 256, size=(160, 400, 3), dtype=np.uint8)
    dist = np.clip(ref.astype(int) + rng.integers(-5, 6, size=ref.shape), 0, 255).astype(np.uint8)
    assert ms_ssim(ref, dist) is None
    result = compute_all(ref, dist)
    assert result["ms_ssim"] is None and math.isfinite(result["psnr"])
    # 161 px is the smallest side that works (pytorch-msssim asserts a side > 160)
    big_ref, big_dist = _jpeg_pair_of_side(161)
    value = ms_ssim(big_ref, big_dist)
    expected = reference_ms_ssim(
        _nchw(big_ref, torch.float32), _nchw(big_dist, torch.float32), data_range=255
    )
    assert value is not None and value == pytest.approx(expected.item(), abs=1e-5)


def _jpeg_pair_of_side(side: int) -> tuple[np.ndarray, np.ndarray]:
    ref = np.ascontiguousarray(data.astronaut()[100 : 100 + side, 150 : 150 + side])
    return ref, _jpeg(ref, 20)


def test_reference_stats_gives_the_same_numbers(photo_pairs):
    for name in PHOTOS:
        group = [(ref, dist) for n, _q, ref, dist in photo_pairs if n == name]
        stats = ReferenceStats(group[0][0])
        for ref, dist in group:
            assert compute_all(stats, dist) == compute_all(ref, dist)


def test_shape_mismatch_raises():
    a = np.zeros((200, 200, 3), np.uint8)
    b = np.zeros((200, 201, 3), np.uint8)
    for fn in (psnr, psnr_y, ms_ssim, compute_all):
        with pytest.raises(ValueError, match="shape"):
            fn(a, b)
    with pytest.raises(ValueError, match="shape"):
        psnr(ReferenceStats(a), b)
    with pytest.raises(ValueError, match="RGB"):
        psnr(a[..., 0], b[..., 0])
    with pytest.raises(ValueError, match="uint8"):
        psnr(a.astype(np.float32), a.astype(np.float32))


def test_registry_metadata():
    assert list(METRICS)[:3] == ["psnr", "psnr_y", "ms_ssim"] == list(metrics.DEFAULT_METRICS)
    img = data.chelsea()
    dist = _jpeg(img, 30)
    for name in metrics.DEFAULT_METRICS:
        info = METRICS[name]
        assert isinstance(info, MetricInfo) and info.name == name
        assert info.needs_reference and info.higher_is_better
        assert info.unit in ("dB", "")
        lo, hi = info.range
        value = info(img, dist)
        assert lo <= value <= hi
        assert info.fn(img, img) == info.best
        assert info.description
    assert METRICS["psnr"].unit == "dB" and METRICS["ms_ssim"].unit == ""
    assert METRICS["ms_ssim"].nullable and not METRICS["psnr"].nullable
    assert METRICS["psnr"].label == "psnr [dB]"
    with pytest.raises(AttributeError):
        METRICS["psnr"].unit = "x"  # frozen


def test_get_metric_suggests_a_name():
    assert get_metric("ms_ssim") is METRICS["ms_ssim"]
    with pytest.raises(KeyError, match="did you mean 'psnr'"):
        get_metric("psrn")
    with pytest.raises(KeyError, match="did you mean 'ms_ssim'"):
        get_metric("msssim")
    with pytest.raises(KeyError, match="unknown metric 'zzz' \\(known: psnr, psnr_y, ms_ssim, psnr_cb, "):
        get_metric("zzz")


def test_compute_all_subset():
    img = data.astronaut()
    dist = _jpeg(img, 50)
    assert set(compute_all(img, dist, metrics=["psnr"])) == {"psnr"}
    with pytest.raises(KeyError, match="did you mean"):
        compute_all(img, dist, metrics=["psnr-y"])
