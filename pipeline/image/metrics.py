"""Full-reference metrics on decoded 8-bit RGB images, registered with their metadata; the classic three here.

Inputs are ``(H, W, 3)`` ``uint8`` RGB arrays of equal shape (what :mod:`pipeline.image.decoding` decodes to). Every metric
takes the reference either as such an array or as a :class:`ReferenceStats`, which caches what depends only on the
reference (its float conversion, its luma, its MS-SSIM pyramid with local means and variances), so one reference
compared with many distorted images is converted once.

Conventions
-----------
``psnr``
    Over RGB: ``10 * log10(255**2 / MSE)`` with the MSE over all pixels and all three channels (not the mean of
    per-channel PSNRs), 8-bit peak 255. Identical images give ``math.inf``.
``psnr_y``
    Over BT.601 luma in studio range, as skimage's ``rgb2ycbcr`` (and MATLAB's) computes it:
    ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` with R, G, B in 0..255, so Y is in [16, 235]. Y is kept in
    float (not rounded to 8 bits); the peak is 255 (the common convention; the nominal range 219 would add
    ``20 log10(219/255) = -1.32`` dB). Identical lumas give ``math.inf``.
``ms_ssim``
    The 5-scale MS-SSIM of Wang, Simoncelli and Bovik (2003): Gaussian window 11 x 11 with sigma 1.5 ("valid"
    filtering, no padding), K1 = 0.01, K2 = 0.03, data range 255, exponents (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
    for the contrast-structure terms of scales 1-4 and the full SSIM of scale 5, 2 x 2 average pooling between
    scales. Computed per RGB channel and averaged over the three channels. Negative contrast-structure terms are
    clamped to 0 before exponentiation, and a side of odd length is zero-padded by one pixel on each end before
    pooling (zeros counted in the average): both exactly as ``pytorch_msssim.ms_ssim`` (the implementation
    CompressAI and most learned-codec papers report), so values are comparable with published numbers. In float64
    it agrees with it to ~1e-15 given the same window; its default window is built in float32 (weights summing to 1
    only to ~6e-8, which biases the local variances), which moves results by up to ~2e-6. (Wang's MATLAB code
    low-pass filters with symmetric padding before subsampling instead; the two differ only near the borders.)
    An image whose smaller side is 160 px or less cannot be filtered at the coarsest scale (the window needs more
    than ``(11 - 1) * 2**4 = 160`` px); ``ms_ssim`` then returns ``None`` and callers write null. Computed in
    float64 with separable ``scipy.ndimage`` filtering, one channel at a time (about 0.15 s for 512 x 768 with a
    cached reference).

Each metric is registered in :data:`METRICS` as a :class:`MetricInfo`: name, unit, direction, range, minimum image
size, whether it needs a GPU, its implementation and version (recorded in ``run.json``) and the function of a
(reference, distorted) pair. Generic code (the ``images`` columns, report axes, ``regress`` criteria, ``query``)
reads that metadata instead of special-casing names. Beyond the classic three (the default selection,
:data:`DEFAULT_METRICS`) the built-ins are SSIMULACRA2, Butteraugli (max and 3-norm), CIEDE2000 and PSNR of the
Cb and Cr planes (:mod:`pipeline.image.fr_metrics`); other packages add metrics through the entry-point group
``prfeval.metrics`` (:func:`load_plugins`), each entry point naming a :class:`MetricInfo`, a list of them, or a
function returning either. :func:`select` turns a ``--metrics`` value into registered names, with a "did you mean"
for an unknown name and the reason for a metric that cannot run here.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata

import numpy as np
from scipy import ndimage

from model.registry import Registry
from pipeline.image import fr_metrics

PEAK = 255.0

# BT.601 studio-range luma from 8-bit R'G'B' (skimage.color.rgb2ycbcr, MATLAB rgb2ycbcr).
LUMA_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0
LUMA_OFFSET = 16.0

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MS_SSIM_WIN_SIZE = 11
MS_SSIM_SIGMA = 1.5
MS_SSIM_K1 = 0.01
MS_SSIM_K2 = 0.03
# pytorch-msssim's requirement: smaller side > (win - 1) * 2**(levels - 1).
MS_SSIM_MIN_SIDE = (MS_SSIM_WIN_SIZE - 1) * 2 ** (len(MS_SSIM_WEIGHTS) - 1) + 1  # 161 px

_C1 = (MS_SSIM_K1 * PEAK) ** 2
_C2 = (MS_SSIM_K2 * PEAK) ** 2


# ----------------------------------------------------------------------------------------------------------------
# Input checking and the cached reference


def _check_image(img: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{what} must be an (H, W, 3) RGB array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (8-bit RGB), got dtype {arr.dtype}")
    return arr


def _gaussian_window() -> np.ndarray:
    coords = np.arange(MS_SSIM_WIN_SIZE, dtype=np.float64) - MS_SSIM_WIN_SIZE // 2
    g = np.exp(-(coords**2) / (2 * MS_SSIM_SIGMA**2))
    return g / g.sum()


_WINDOW = _gaussian_window()
_HALF = MS_SSIM_WIN_SIZE // 2


def _blur(x: np.ndarray) -> np.ndarray:
    """Separable 'valid' Gaussian filtering over the last two axes of a stack of planes (..., H, W)."""
    out = ndimage.correlate1d(x, _WINDOW, axis=-1, mode="constant")[..., _HALF:-_HALF]
    return ndimage.correlate1d(out, _WINDOW, axis=-2, mode="constant")[..., _HALF:-_HALF, :]


@dataclass
class _Scale:
    """One MS-SSIM scale of one reference channel: the plane, its local means and local variances."""

    x: np.ndarray  # (H, W)
    mu: np.ndarray  # (H - 10, W - 10)
    var: np.ndarray


def _pool(x: np.ndarray) -> np.ndarray:
    """2 x 2 average pooling of (..., H, W).

    An odd side is zero-padded by one on each end and the zeros count in the average, as torch's
    ``avg_pool2d(kernel_size=2, padding=side % 2)`` in pytorch-msssim; the trailing pad falls outside every window,
    so only the leading zero is used.
    """
    pad = [(0, 0)] * (x.ndim - 2) + [(x.shape[-2] % 2, 0), (x.shape[-1] % 2, 0)]
    if any(p for p, _ in pad):
        x = np.pad(x, pad)
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    return x.reshape(*x.shape[:-2], h, 2, w, 2).sum(axis=(-3, -1)) * 0.25


class ReferenceStats:
    """A reference image with the conversions every metric needs, computed once and cached.

    Build it once per reference and pass it in place of the reference array to :func:`psnr`, :func:`psnr_y`,
    :func:`ms_ssim` or :func:`compute_all`. Conversions are computed lazily, on the first metric that needs them.
    The MS-SSIM cache holds about 100 bytes per pixel (planes, local means and variances of every channel and
    scale, float64); drop the object when the reference group is done.
    """

    def __init__(self, ref: np.ndarray):
        self.rgb = _check_image(ref, "reference")
        self.shape: tuple[int, int, int] = tuple(self.rgb.shape)  # type: ignore[assignment]
        self._float: np.ndarray | None = None
        self._luma: np.ndarray | None = None
        self._pyramid: list[list[_Scale]] | None = None
        self.cache: dict = {}  # what other metrics derive from the reference alone, by their own keys

    @property
    def float_rgb(self) -> np.ndarray:
        """The reference as float64, values 0..255."""
        if self._float is None:
            self._float = self.rgb.astype(np.float64)
        return self._float

    @property
    def luma(self) -> np.ndarray:
        """BT.601 studio-range luma in float64 (see the module docstring)."""
        if self._luma is None:
            self._luma = luma_bt601(self.rgb)
        return self._luma

    @property
    def ms_ssim_available(self) -> bool:
        """Whether the image is large enough for 5-scale MS-SSIM (smaller side >= 161 px)."""
        return min(self.shape[:2]) >= MS_SSIM_MIN_SIDE

    def pyramid(self) -> list[list[_Scale]]:
        """Per channel, the reference's MS-SSIM scales with local means and variances (cached)."""
        if self._pyramid is None:
            self._pyramid = [_build_pyramid(plane) for plane in _to_planes(self.rgb)]
        return self._pyramid


def _as_reference(ref: np.ndarray | ReferenceStats) -> ReferenceStats:
    return ref if isinstance(ref, ReferenceStats) else ReferenceStats(ref)


def _check_pair(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> tuple[ReferenceStats, np.ndarray]:
    stats = _as_reference(ref)
    arr = _check_image(dist, "distorted image")
    if arr.shape != stats.shape:
        raise ValueError(f"reference and distorted image differ in shape: {stats.shape} vs {arr.shape}")
    return stats, arr


def luma_bt601(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range luma of an 8-bit RGB image, float64: ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``.

    The same values as ``skimage.color.rgb2ycbcr(rgb)[..., 0]``.
    """
    arr = np.asarray(rgb, dtype=np.float64)
    return arr @ LUMA_WEIGHTS + LUMA_OFFSET


# ----------------------------------------------------------------------------------------------------------------
# The metrics


def _psnr_from_mse(mse: float) -> float:
    if mse == 0.0:
        return math.inf
    return float(10.0 * np.log10(PEAK**2 / mse))


def psnr(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float:
    """PSNR over RGB in dB: ``10 log10(255^2 / MSE)``, MSE over all pixels and channels; ``inf`` if identical.

    Raises ``ValueError`` when the shapes differ or an input is not ``(H, W, 3)`` uint8.
    """
    stats, arr = _check_pair(ref, dist)
    diff = stats.float_rgb - arr
    return _psnr_from_mse(float(np.mean(np.square(diff))))


def psnr_y(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float:
    """PSNR over BT.601 luma in dB, peak 255; ``inf`` if the lumas are identical.

    Luma is skimage's ``rgb2ycbcr`` convention, ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255`` on 0..255
    RGB, kept in float (not rounded).
    """
    stats, arr = _check_pair(ref, dist)
    diff = stats.luma - luma_bt601(arr)
    return _psnr_from_mse(float(np.mean(np.square(diff))))


def _to_planes(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (3, H, W) float64: each channel an independent plane."""
    return rgb.transpose(2, 0, 1).astype(np.float64)


def _build_pyramid(x: np.ndarray) -> list[_Scale]:
    """The MS-SSIM scales of one reference plane (H, W)."""
    scales = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        mu, ex2 = _blur(np.stack([x, x * x]))
        scales.append(_Scale(x=x, mu=mu, var=ex2 - mu * mu))
        if level < len(MS_SSIM_WEIGHTS) - 1:
            x = _pool(x)
    return scales


def _ms_ssim_plane(pyramid: list[_Scale], y: np.ndarray) -> float:
    """MS-SSIM of one distorted plane ``y`` (H, W) against the reference plane's pyramid."""
    value = 1.0
    n_levels = len(MS_SSIM_WEIGHTS)
    for level, (scale, weight) in enumerate(zip(pyramid, MS_SSIM_WEIGHTS, strict=True)):
        mu_y, ey2, exy = _blur(np.stack([y, y * y, scale.x * y]))
        mu_y_sq = mu_y * mu_y
        mu_xy = scale.mu * mu_y
        cs_map = (2 * (exy - mu_xy) + _C2) / (scale.var + (ey2 - mu_y_sq) + _C2)
        if level < n_levels - 1:
            factor = cs_map.mean()
            y = _pool(y)
        else:
            factor = ((2 * mu_xy + _C1) / (scale.mu * scale.mu + mu_y_sq + _C1) * cs_map).mean()
        value *= max(float(factor), 0.0) ** weight
    return value


def ms_ssim(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float | None:
    """5-scale MS-SSIM on RGB (per channel, then the mean of the three), in [0, 1]; 1.0 for identical images.

    Returns ``None`` when the smaller side is under 161 px (too small for five scales); callers write null.
    Conventions (window, constants, weights, odd-side pooling) are in the module docstring.
    """
    stats, arr = _check_pair(ref, dist)
    if not stats.ms_ssim_available:
        return None
    if np.array_equal(stats.rgb, arr):
        return 1.0
    planes = _to_planes(arr)
    per_channel = [_ms_ssim_plane(pyr, plane) for pyr, plane in zip(stats.pyramid(), planes, strict=True)]
    return float(np.mean(per_channel))


# ----------------------------------------------------------------------------------------------------------------
# The other built-ins: adapters from a ReferenceStats (with its cache) to the functions of fr_metrics


def _ycbcr(stats: ReferenceStats) -> np.ndarray:
    if "ycbcr" not in stats.cache:
        stats.cache["ycbcr"] = fr_metrics.ycbcr_bt601(stats.rgb)
    return stats.cache["ycbcr"]


def _plane_psnr(plane: str) -> Callable[[np.ndarray | ReferenceStats, np.ndarray], float]:
    def fn(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float:
        stats, arr = _check_pair(ref, dist)
        return _psnr_from_mse(fr_metrics.plane_mse(_ycbcr(stats), fr_metrics.ycbcr_bt601(arr), plane))

    fn.__name__ = f"psnr_{plane}"
    return fn


psnr_cb = _plane_psnr("cb")
psnr_cr = _plane_psnr("cr")


def ssimulacra2(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float:
    """SSIMULACRA2 (up to 100 for identical images); see :mod:`pipeline.image.fr_metrics`."""
    stats, arr = _check_pair(ref, dist)
    if "ssimulacra2" not in stats.cache:
        stats.cache["ssimulacra2"] = fr_metrics.ssimulacra2_scales(stats.rgb)
    return fr_metrics.ssimulacra2(stats.cache["ssimulacra2"], arr)


def ciede2000(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float:
    """Mean CIEDE2000 colour difference over pixels (0 for identical images)."""
    stats, arr = _check_pair(ref, dist)
    if "lab" not in stats.cache:
        stats.cache["lab"] = fr_metrics.lab(stats.rgb)
    return fr_metrics.ciede2000(stats.cache["lab"], arr)


def _butteraugli_pair(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> tuple[float, float]:
    """Both Butteraugli norms of one pair from one run of the program (the last pair's result is kept)."""
    stats, arr = _check_pair(ref, dist)
    digest = hashlib.blake2b(np.ascontiguousarray(arr).data, digest_size=16).digest()
    last = stats.cache.get("butteraugli_last")
    if last is not None and last[0] == digest:
        return last[1]
    if np.array_equal(stats.rgb, arr):
        result = (0.0, 0.0)
    else:
        if "png" not in stats.cache:
            stats.cache["png"] = fr_metrics.png_bytes(stats.rgb)
        result = fr_metrics.butteraugli(stats.cache["png"], arr)
    stats.cache["butteraugli_last"] = (digest, result)
    return result


def butteraugli(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float:
    """Butteraugli max-norm distance (libjxl ``butteraugli_main``); 0 for identical images."""
    return _butteraugli_pair(ref, dist)[0]


def butteraugli_3norm(ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float:
    """Butteraugli 3-norm (libjxl ``butteraugli_main --pnorm 3``); 0 for identical images."""
    return _butteraugli_pair(ref, dist)[1]


# ----------------------------------------------------------------------------------------------------------------
# The registry


@dataclass(frozen=True)
class MetricInfo:
    """A full-reference metric and the metadata generic code reads (columns, axes, criteria) instead of names.

    ``fn(ref, dist)`` maps a decoded pair to a value: with ``uses_stats`` it takes the reference as an array or a
    :class:`ReferenceStats` (the built-ins), otherwise it always gets two ``(H, W, 3)`` ``uint8`` arrays (the
    simplest contract for a plug-in). ``range`` is the closed range of finite values (``math.inf`` where
    unbounded); ``best`` is the value for identical images; ``min_size`` is the smallest side the metric is
    defined on (smaller images give ``None``, written as null); ``nullable`` says whether the value may be
    ``None``. ``implementation`` and ``version`` (a string or a function returning one) say what computes it and
    go to ``run.json``; ``unavailable()`` returns why the metric cannot run on this machine, or None.
    """

    name: str
    fn: Callable[[np.ndarray | ReferenceStats, np.ndarray], float | None] = field(repr=False)
    higher_is_better: bool
    unit: str
    range: tuple[float, float]
    description: str
    needs_reference: bool = True
    best: float = math.inf
    nullable: bool = False
    title: str = ""
    min_size: int = 1
    needs_gpu: bool = False
    implementation: str = ""
    version: str | Callable[[], str] = field(default="", compare=False)
    unavailable: Callable[[], str | None] | None = field(default=None, repr=False, compare=False)
    uses_stats: bool = False
    margin: float = 0.0  # the change `regress` tolerates by default before it calls this metric a regression

    def __call__(self, ref: np.ndarray | ReferenceStats, dist: np.ndarray) -> float | None:
        return self.fn(ref, dist)

    @property
    def label(self) -> str:
        """Axis label, e.g. ``"psnr [dB]"``."""
        return f"{self.name} [{self.unit}]" if self.unit else self.name

    @property
    def display(self) -> str:
        """The human name (``title``, else ``name``)."""
        return self.title or self.name

    def version_string(self) -> str:
        try:
            return self.version() if callable(self.version) else str(self.version)
        except Exception as e:  # a version probe must never stop a run
            return f"unknown ({type(e).__name__})"

    def why_unavailable(self) -> str | None:
        return self.unavailable() if self.unavailable is not None else None

    def measure(self, stats: ReferenceStats, dist: np.ndarray) -> float | None:
        """The value on one pair (``None`` below ``min_size``), given the reference's cached stats."""
        if min(stats.shape[:2]) < self.min_size:
            return None
        value = self.fn(stats, dist) if self.uses_stats else self.fn(stats.rgb, dist)
        return None if value is None else float(value)

    def describe(self) -> dict:
        """The metadata as plain JSON values (``prfeval metrics``, ``run.json``)."""
        lo, hi = self.range
        return {
            "name": self.name,
            "title": self.display,
            "unit": self.unit,
            "higher_is_better": self.higher_is_better,
            "range": [lo, hi],
            "best": self.best,
            "min_size": self.min_size,
            "needs_gpu": self.needs_gpu,
            "implementation": self.implementation,
            "version": self.version_string(),
            "description": self.description,
        }


class UnknownMetricError(KeyError):
    """An unknown metric name; the message carries a "did you mean …" suggestion."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0])


class MetricUnavailableError(RuntimeError):
    """A registered metric that cannot run on this machine (e.g. its external program is missing)."""


_OURS = "prfeval (numpy/scipy)"
METRICS: Registry[MetricInfo] = Registry("metric", error=UnknownMetricError, cutoff=0.5)
DEFAULT_METRICS: tuple[str, ...] = ("psnr", "psnr_y", "ms_ssim")  # the cheap ones, the columns of every run
PLUGIN_GROUP = "prfeval.metrics"


def _psnr_info(name: str, fn, title: str, description: str) -> MetricInfo:
    """A PSNR of ours: dB, higher is better, unbounded above (identical images are +inf), margin 0.1 dB."""
    return MetricInfo(
        name=name, fn=fn, higher_is_better=True, unit="dB", range=(0.0, math.inf), best=math.inf, title=title,
        uses_stats=True, implementation=_OURS, version="1", margin=0.1, description=description,
    )  # fmt: skip


for _info in (
    _psnr_info("psnr", psnr, "PSNR", "PSNR over RGB, MSE over all pixels and channels, 8-bit peak 255"),
    _psnr_info("psnr_y", psnr_y, "PSNR-Y", "PSNR over BT.601 studio-range luma (skimage rgb2ycbcr), peak 255"),
    MetricInfo(
        name="ms_ssim", fn=ms_ssim, higher_is_better=True, unit="", range=(0.0, 1.0), best=1.0, nullable=True,
        title="MS-SSIM", min_size=MS_SSIM_MIN_SIDE, uses_stats=True, implementation=_OURS, version="1",
        margin=0.001, description="5-scale MS-SSIM (Wang et al. 2003) per RGB channel, averaged; null below 161 px",
    ),
    _psnr_info("psnr_cb", psnr_cb, "PSNR-Cb", "PSNR over the BT.601 studio-range Cb plane (skimage rgb2ycbcr), peak 255"),
    _psnr_info("psnr_cr", psnr_cr, "PSNR-Cr", "PSNR over the BT.601 studio-range Cr plane (skimage rgb2ycbcr), peak 255"),
    MetricInfo(
        name="ssimulacra2", fn=ssimulacra2, higher_is_better=True, unit="", range=(-math.inf, 100.0), best=100.0,
        nullable=True, title="SSIMULACRA2", min_size=fr_metrics.S2_MIN_SIDE, uses_stats=True,
        implementation="ssimulacra2 (PyPI port) with the original tool's borders and scales",
        version=fr_metrics.ssimulacra2_version, margin=0.5,
        description="SSIMULACRA 2.1 (cloudinary/ssimulacra2): 100 = identical, ~70 high, ~50 medium quality",
    ),
    MetricInfo(
        name="butteraugli", fn=butteraugli, higher_is_better=False, unit="", range=(0.0, math.inf), best=0.0,
        title="Butteraugli", uses_stats=True, implementation="libjxl butteraugli_main (max norm)",
        version=fr_metrics.butteraugli_version, unavailable=fr_metrics.butteraugli_unavailable, margin=0.05,
        description="Butteraugli distance, max norm (libjxl butteraugli_main); 0 = identical, lower is better",
    ),
    MetricInfo(
        name="butteraugli_3norm", fn=butteraugli_3norm, higher_is_better=False, unit="", range=(0.0, math.inf),
        best=0.0, title="Butteraugli 3-norm", uses_stats=True,
        implementation="libjxl butteraugli_main --pnorm 3", version=fr_metrics.butteraugli_version,
        unavailable=fr_metrics.butteraugli_unavailable, margin=0.02,
        description="Butteraugli distance, 3-norm (libjxl butteraugli_main); 0 = identical, lower is better",
    ),
    MetricInfo(
        name="ciede2000", fn=ciede2000, higher_is_better=False, unit="ΔE00", range=(0.0, math.inf), best=0.0,
        title="CIEDE2000", uses_stats=True, implementation="scikit-image deltaE_ciede2000 of rgb2lab (D65)",
        version=lambda: metadata.version("scikit-image"), margin=0.05,
        description="mean CIEDE2000 colour difference over pixels (Sharma et al. 2005); lower is better",
    ),
):  # fmt: skip
    METRICS.add(_info.name, _info)
del _info

_plugins_loaded = False
PLUGIN_ERRORS: dict[str, str] = {}  # entry point -> why it could not be registered


def _as_infos(obj: object) -> list[MetricInfo]:
    if callable(obj) and not isinstance(obj, MetricInfo):
        obj = obj()
    items = [obj] if isinstance(obj, MetricInfo) else list(obj)  # type: ignore[call-overload]
    for item in items:
        if not isinstance(item, MetricInfo):
            raise TypeError(f"expected a MetricInfo, got {type(item).__name__}")
    return items


def load_plugins(*, force: bool = False) -> list[str]:
    """Register the metrics of the ``prfeval.metrics`` entry points (once per process); their names.

    A plug-in that fails to load or names a metric already registered is left out with a warning (and its
    reason in :data:`PLUGIN_ERRORS`); the other metrics stay usable.
    """
    global _plugins_loaded
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True
    added = []
    for ep in metadata.entry_points(group=PLUGIN_GROUP):
        try:
            for info in _as_infos(ep.load()):
                if info.name in METRICS and METRICS[info.name] == info:
                    continue
                METRICS.add(info.name, info)
                added.append(info.name)
        except Exception as e:  # a broken plug-in never breaks the built-in metrics
            PLUGIN_ERRORS[ep.name] = f"{type(e).__name__}: {e}"
            warnings.warn(f"metric plug-in {ep.name!r} ({ep.value}) not loaded: {e}", stacklevel=2)
    return added


def get_metric(name: str) -> MetricInfo:
    """The registered metric called ``name``; an unknown name raises ``KeyError`` with "did you mean …"."""
    if name not in METRICS:
        load_plugins()
    return METRICS.get(name)


def available_metrics() -> list[MetricInfo]:
    """Every registered metric (built-ins, then plug-ins), whether or not it can run here."""
    load_plugins()
    return list(METRICS.values())


def parse_names(spec: str | Iterable[str] | None) -> list[str]:
    """``"psnr, ms_ssim"`` or ``["psnr", "ms_ssim"]`` -> the names, stripped, without repeats; None -> defaults."""
    if spec is None:
        return list(DEFAULT_METRICS)
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def select(spec: str | Iterable[str] | None, *, check_available: bool = True) -> tuple[str, ...]:
    """The registered names a ``--metrics`` value selects (in its order; the defaults for None or "").

    An unknown name raises :class:`UnknownMetricError` ("did you mean …"); with ``check_available``, a metric
    that cannot run on this machine raises :class:`MetricUnavailableError` with the reason.
    """
    names = parse_names(spec) or list(DEFAULT_METRICS)
    out = []
    for name in names:
        info = get_metric(name)
        if check_available and (why := info.why_unavailable()):
            raise MetricUnavailableError(f"metric {info.name!r} is unavailable: {why}")
        out.append(info.name)
    return tuple(dict.fromkeys(out))


def describe(names: Sequence[str]) -> list[dict]:
    """Metadata (implementation and version included) of the named metrics, for ``run.json``."""
    return [get_metric(n).describe() for n in names]


def compute_all(
    ref: np.ndarray | ReferenceStats, dist: np.ndarray, metrics: Sequence[str] | None = None
) -> dict[str, float | None]:
    """The metrics named in ``metrics`` (default: :data:`DEFAULT_METRICS`) of ``dist`` against ``ref``.

    Returns ``{"psnr": ..., "psnr_y": ..., "ms_ssim": ...}``; pass a :class:`ReferenceStats` as ``ref`` when one
    reference is compared with many distorted images.
    """
    stats, arr = _check_pair(ref, dist)
    names = DEFAULT_METRICS if metrics is None else metrics
    return {info.name: info.measure(stats, arr) for info in (get_metric(n) for n in names)}
