"""The pairs where PRFNet and PSNR disagree most, with side-by-side crops of the reference and both images.

A pair disagrees when PRFNet prefers one image (``p_a > 0.5``: A is closer to the reference) and PSNR the other.
Its score is ``|p_a - 0.5| * |psnr_a - psnr_b|``: both judgments must be confident for a pair to rank high. An
infinite PSNR (a lossless image) counts as :data:`PSNR_CAP` dB. Pairs where either side has no preference
(``p_a == 0.5`` or equal PSNR) are never disagreements.

Crops show the same box of O, A and B: the square patch where A and B differ most (largest mean absolute
difference), found with a summed-area table in one pass over the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.image import decoding as image_io

PSNR_CAP = 100.0
CROP = 128

COLUMNS = [
    "ref_id",
    "a_id",
    "b_id",
    "a_item",
    "b_item",
    "a_bpp",
    "b_bpp",
    "p_a",
    "psnr_a",
    "psnr_b",
    "prf_prefers",
    "psnr_prefers",
    "score",
]


@dataclass(frozen=True)
class Crops:
    """PNG bytes of the same box cut from O, A and B, or why there are none."""

    box: tuple[int, int, int, int] | None  # x, y, width, height
    o: bytes | None = None
    a: bytes | None = None
    b: bytes | None = None
    error: str | None = None


def find(images: pd.DataFrame, pairs: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` most disagreeing pairs, strongest first, with :data:`COLUMNS` plus ``ref_uri``, ``a_uri``,
    ``b_uri``.

    ``images`` and ``pairs`` carry item labels (``item``; ``a`` and ``b``) as built by
    :func:`pipeline.report.leaderboard.comparisons`.
    """
    if n <= 0 or pairs.empty:
        return pd.DataFrame(columns=[*COLUMNS, "ref_uri", "a_uri", "b_uri"])
    side = images.set_index(["ref_id", "dist_id"])[["psnr", "dist_uri", "ref_uri"]]
    a = side.reindex(pd.MultiIndex.from_arrays([pairs["ref_id"], pairs["a_id"]]))
    b = side.reindex(pd.MultiIndex.from_arrays([pairs["ref_id"], pairs["b_id"]]))
    psnr_a = a["psnr"].to_numpy(dtype=np.float64)
    psnr_b = b["psnr"].to_numpy(dtype=np.float64)
    p = pairs["p_a"].to_numpy(dtype=np.float64)
    capped = np.minimum(psnr_a, PSNR_CAP) - np.minimum(psnr_b, PSNR_CAP)  # NaN stays NaN
    with np.errstate(invalid="ignore"):
        disagree = np.sign(p - 0.5) * np.sign(capped) < 0
        score = np.where(disagree, np.abs(p - 0.5) * np.abs(capped), np.nan)
    out = pd.DataFrame(
        {
            "ref_id": pairs["ref_id"].to_numpy(),
            "a_id": pairs["a_id"].to_numpy(),
            "b_id": pairs["b_id"].to_numpy(),
            "a_item": pairs["a"].to_numpy(),
            "b_item": pairs["b"].to_numpy(),
            "a_bpp": pairs["a_bpp"].to_numpy(dtype=np.float64),
            "b_bpp": pairs["b_bpp"].to_numpy(dtype=np.float64),
            "p_a": p,
            "psnr_a": psnr_a,
            "psnr_b": psnr_b,
            "prf_prefers": np.where(p > 0.5, "A", "B"),
            "psnr_prefers": np.where(capped > 0, "A", "B"),
            "score": score,
            "ref_uri": a["ref_uri"].to_numpy(),
            "a_uri": a["dist_uri"].to_numpy(),
            "b_uri": b["dist_uri"].to_numpy(),
        }
    )
    out = out[np.isfinite(out["score"])]
    return out.sort_values(["score", "ref_id", "a_id", "b_id"], ascending=[False, True, True, True]).head(n)


def most_different_box(a: np.ndarray, b: np.ndarray, size: int = CROP) -> tuple[int, int, int, int]:
    """``(x, y, w, h)`` of the square window (side ``min(size, H, W)``) with the largest total ``|a - b|``.

    Ties go to the top-left-most window.
    """
    h, w = a.shape[:2]
    side = min(size, h, w)
    diff = np.abs(a.astype(np.int32) - b.astype(np.int32)).sum(axis=2, dtype=np.int64)
    sat = np.zeros((h + 1, w + 1), dtype=np.int64)
    sat[1:, 1:] = diff.cumsum(axis=0).cumsum(axis=1)
    windows = sat[side:, side:] - sat[:-side, side:] - sat[side:, :-side] + sat[:-side, :-side]
    y, x = np.unravel_index(int(np.argmax(windows)), windows.shape)
    return int(x), int(y), side, side


def crops(ref_uri: str, a_uri: str, b_uri: str, size: int = CROP) -> Crops:
    """The same box of O, A and B around the place A and B differ most; an unreadable image gives ``error``."""
    try:
        o, a, b = (image_io.read_image(u) for u in (ref_uri, a_uri, b_uri))
    except image_io.ImageError as e:
        return Crops(None, error=e.message)
    if not (o.shape == a.shape == b.shape):
        return Crops(None, error=f"image sizes differ: {o.shape[:2]}, {a.shape[:2]}, {b.shape[:2]}")
    x, y, w, h = box = most_different_box(a, b, size)
    cut = [image_io.encode_png(img[y : y + h, x : x + w], compress_level=6) for img in (o, a, b)]
    return Crops(box, *cut)
