"""Full-reference metrics beyond the classic three: SSIMULACRA2, Butteraugli, CIEDE2000 and PSNR per YCbCr plane.

Plain functions of 8-bit RGB arrays (``(H, W, 3)`` ``uint8``, as :mod:`pipeline.image.decoding` decodes to);
:mod:`pipeline.image.metrics` registers them with their metadata and caches what depends on the reference alone.

SSIMULACRA2
    Jon Sneyers' metric (cloudinary/ssimulacra2, version 2.1), scores up to 100 (identical), higher is better. Built
    from the numpy port on PyPI (``ssimulacra2`` 0.3.0: colour conversion to XYB, 2 x 2 downsampling in linear
    RGB, the SSIM and edge-difference maps, the weights and the final mapping) with two corrections that make it
    follow the original tool: the Gaussian blur (sigma 1.5) treats everything outside the image as zero in both
    directions (the original's recursive Gaussian does; the port mirrors horizontally), and a scale is skipped only
    when the image of the *previous* scale is under 8 px (the original's loop: a 128 px image has six scales, the
    port stops at five, which moves small images by tens of points). On the committed 128 x 128 JPEG pairs of
    ``tests/data/metrics`` it is within the tolerance stated in the tests of the original tool (the remaining
    difference is the original's recursive approximation of the Gaussian and its float32 arithmetic).
Butteraugli
    ``butteraugli_main ref.png dist.png --pnorm 3`` of libjxl (Debian ``libjxl-devtools``), run as a subprocess on
    temporary PNG files: its first output line is the max-norm distance, the second the 3-norm; 0 for identical
    images, lower is better. Unavailable (a clear message) when the program is not installed.
CIEDE2000
    The mean over pixels of ΔE00 (Sharma, Wu and Dalal 2005) between the CIELAB values of the two images, computed
    by scikit-image (``rgb2lab`` of sRGB in [0, 1], D65, then ``deltaE_ciede2000``); lower is better.
PSNR per YCbCr plane
    BT.601 studio-range Y, Cb and Cr as scikit-image's ``rgb2ycbcr`` computes them (the same convention as
    ``psnr_y``; kept in float), PSNR with peak 255 on each plane.
"""

from __future__ import annotations

import functools
import io
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage

# ----------------------------------------------------------------------------------------------------------------
# YCbCr planes (BT.601 studio range, skimage.color.rgb2ycbcr)

YCBCR_MATRIX = (
    np.array(
        [[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64
    )
    / 255.0
)
YCBCR_OFFSET = np.array([16.0, 128.0, 128.0])
PLANES = ("y", "cb", "cr")


def ycbcr_bt601(rgb: np.ndarray) -> np.ndarray:
    """BT.601 studio-range Y, Cb, Cr of an 8-bit RGB image, float64 (the values of ``skimage.color.rgb2ycbcr``)."""
    return np.asarray(rgb, dtype=np.float64) @ YCBCR_MATRIX.T + YCBCR_OFFSET


def plane_mse(ref_ycbcr: np.ndarray, dist_ycbcr: np.ndarray, plane: str) -> float:
    """Mean squared difference of one plane (``"y"``, ``"cb"`` or ``"cr"``) of two YCbCr images."""
    k = PLANES.index(plane)
    return float(np.mean(np.square(ref_ycbcr[..., k] - dist_ycbcr[..., k])))


# ----------------------------------------------------------------------------------------------------------------
# CIEDE2000


def lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of an 8-bit sRGB image, float64, by scikit-image."""
    from skimage.color import rgb2lab

    return rgb2lab(np.asarray(rgb, dtype=np.float64) / 255.0)


def ciede2000_map(lab_ref: np.ndarray, lab_dist: np.ndarray) -> np.ndarray:
    """Per-pixel ΔE00 of two CIELAB arrays (..., 3), by scikit-image (kL = kC = kH = 1)."""
    from skimage.color import deltaE_ciede2000

    return deltaE_ciede2000(lab_ref, lab_dist)


def ciede2000(lab_ref: np.ndarray, dist_rgb: np.ndarray) -> float:
    """Mean ΔE00 over pixels between a reference (already CIELAB) and an 8-bit RGB distorted image."""
    return float(np.mean(ciede2000_map(lab_ref, lab(dist_rgb))))


# ----------------------------------------------------------------------------------------------------------------
# SSIMULACRA2

S2_SIGMA = 1.5
S2_TRUNCATE = (
    3.33  # the port's kernel extent; the original's recursive filter has radius round(3.2795 sigma + 0.2546)
)
S2_MIN_SIDE = (
    8  # a scale is computed only if the previous scale's image has at least this many pixels per side
)


def _s2():
    import ssimulacra2.ssimulacra2 as port

    return port


def ssimulacra2_version() -> str:
    import ssimulacra2

    return str(getattr(ssimulacra2, "__version__", "unknown"))


def _s2_blur(x: np.ndarray) -> np.ndarray:
    """Gaussian blur (sigma 1.5) of an (H, W, 3) image, zero outside the image, as the original tool's."""
    return ndimage.gaussian_filter(
        x, sigma=S2_SIGMA, truncate=S2_TRUNCATE, mode="constant", cval=0.0, axes=(0, 1)
    )


@dataclass
class _S2Scale:
    x: np.ndarray  # positive XYB of the reference at this scale
    mu: np.ndarray  # its blur
    sigma_sq: np.ndarray  # blur of its square


def _xyb(port, linear: np.ndarray) -> np.ndarray:
    return port.make_positive_xyb(port.linear_rgb_to_xyb(linear))


def ssimulacra2_scales(rgb: np.ndarray) -> list[tuple[np.ndarray, _S2Scale]]:
    """Per scale, the reference's linear RGB and its XYB statistics (computed once per reference)."""
    port = _s2()
    linear = port.srgb_to_linear(np.asarray(rgb, dtype=np.float64))
    out: list[tuple[np.ndarray, _S2Scale]] = []
    for scale in range(port.kNumScales):
        if out and min(out[-1][1].x.shape[:2]) < S2_MIN_SIDE:
            break
        if scale:
            linear = port.downsample(linear, 2, 2)
        x = _xyb(port, linear)
        out.append((linear, _S2Scale(x=x, mu=_s2_blur(x), sigma_sq=_s2_blur(x * x))))
    return out


def ssimulacra2(ref_scales: list[tuple[np.ndarray, _S2Scale]], dist_rgb: np.ndarray) -> float:
    """SSIMULACRA2 of an 8-bit RGB distorted image against the reference's :func:`ssimulacra2_scales`."""
    port = _s2()
    linear = port.srgb_to_linear(np.asarray(dist_rgb, dtype=np.float64))
    result = port.Msssim()
    for scale, (_, ref) in enumerate(ref_scales):
        if scale:
            linear = port.downsample(linear, 2, 2)
        y = _xyb(port, linear)
        mu_y = _s2_blur(y)
        s = port.MsssimScale()
        s.avg_ssim = port.ssim_map(ref.mu, mu_y, ref.sigma_sq, _s2_blur(y * y), _s2_blur(ref.x * y))
        s.avg_edgediff = port.edge_diff_map(ref.x, ref.mu, y, mu_y)
        result.scales.append(s)
    return float(result.score())


# ----------------------------------------------------------------------------------------------------------------
# Butteraugli (libjxl's butteraugli_main)

BUTTERAUGLI_PROGRAM = "butteraugli_main"
BUTTERAUGLI_ENV = "PRFEVAL_BUTTERAUGLI"  # path of the program, when it is not on PATH under its usual name
BUTTERAUGLI_TIMEOUT = 600.0


class ToolMissing(RuntimeError):
    """An external program a metric runs is not installed."""


def butteraugli_program() -> str | None:
    """The path of ``butteraugli_main`` (``$PRFEVAL_BUTTERAUGLI`` or on PATH), or None."""
    override = os.environ.get(BUTTERAUGLI_ENV)
    if override:
        return override if os.access(override, os.X_OK) else None
    return shutil.which(BUTTERAUGLI_PROGRAM)


def butteraugli_unavailable() -> str | None:
    """Why Butteraugli cannot run here, or None when it can."""
    if butteraugli_program() is None:
        return (
            f"butteraugli needs the program {BUTTERAUGLI_PROGRAM} (Debian package libjxl-devtools; "
            f"`make system-deps` installs it, or set ${BUTTERAUGLI_ENV}), which is not installed"
        )
    return None


@functools.cache
def butteraugli_version() -> str:
    """The version of the installed libjxl-devtools package, or ``"unknown"``."""
    try:
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "libjxl-devtools"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def png_bytes(rgb: np.ndarray) -> bytes:
    """An 8-bit RGB image as PNG (fast compression: the file only lives for one comparison)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def butteraugli(ref_png: bytes, dist_rgb: np.ndarray) -> tuple[float, float]:
    """``(max-norm, 3-norm)`` Butteraugli distances of ``dist_rgb`` against the reference's PNG bytes."""
    program = butteraugli_program()
    if program is None:
        raise ToolMissing(butteraugli_unavailable())
    with tempfile.TemporaryDirectory(prefix="prfeval-butteraugli-") as tmp:
        ref_path, dist_path = os.path.join(tmp, "ref.png"), os.path.join(tmp, "dist.png")
        with open(ref_path, "wb") as f:
            f.write(ref_png)
        with open(dist_path, "wb") as f:
            f.write(png_bytes(dist_rgb))
        done = subprocess.run(
            [program, ref_path, dist_path, "--pnorm", "3"],
            capture_output=True,
            text=True,
            timeout=BUTTERAUGLI_TIMEOUT,
        )
    if done.returncode != 0:
        tail = " ".join(done.stderr.split())[-200:]
        raise RuntimeError(f"{BUTTERAUGLI_PROGRAM} exited with status {done.returncode}: {tail}")
    return parse_butteraugli(done.stdout)


def parse_butteraugli(stdout: str) -> tuple[float, float]:
    """``(max, 3-norm)`` from ``butteraugli_main --pnorm 3`` output (``"5.53\\n3-norm: 2.05"``)."""
    lines = [line.strip() for line in stdout.strip().splitlines() if line.strip()]
    if len(lines) < 2 or not lines[1].startswith("3-norm:"):
        raise RuntimeError(f"unexpected {BUTTERAUGLI_PROGRAM} output: {stdout[:200]!r}")
    return float(lines[0]), float(lines[1].split(":", 1)[1])
