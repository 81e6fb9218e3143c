"""The CPU side of a reference group: read, check, measure and tile, ahead of the scoring actors.

:func:`load_group` turns a group record (from :func:`pipeline.scoring.manifest.groups`) into a :class:`LoadedGroup`: the
decoded images cut into the shared patch grid, the classic metrics of every distorted image, and an error row for
every image that could not be used. Nothing here needs a GPU, so a GPU actor never waits on image decoding.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from pipeline.image import decoding, metrics, tiling
from pipeline.io import storage
from pipeline.scoring.manifest import within_roots


@dataclass
class LoadedGroup:
    ref_id: str
    ref_uri: str
    key: str
    dists: list[dict]  # usable distorted images, with width/height/bpp/psnr/psnr_y/ms_ssim
    errors: list[dict] = field(default_factory=list)
    patches: np.ndarray | None = None  # (1 + len(dists), K, 3, h, w) uint8
    pairs_by_id: list[list[str]] | None = None  # explicit pairs to score instead of a strategy
    load_seconds: float = 0.0

    def meta_json(self) -> str:
        d = asdict(self)
        d.pop("patches")
        return json.dumps(d)


def _error(group: dict, dist: dict | None, uri: str, code: str, message: str) -> dict:
    return {
        "stage": "load",
        "ref_id": group["ref_id"],
        "dist_id": dist["dist_id"] if dist else None,
        "uri": storage.display(uri),
        "error": code,
        "message": storage.redact(message),
    }


def load_group(
    group: dict,
    *,
    patch: int,
    min_size: int = 32,
    max_pixels: int | None = decoding.DEFAULT_MAX_PIXELS,
    allow_roots: list[str] | None = None,
) -> LoadedGroup:
    """Read the reference and its distorted images, check them, compute classic metrics, cut patches."""
    start = time.perf_counter()
    out = LoadedGroup(
        ref_id=group["ref_id"],
        ref_uri=storage.display(group["ref_uri"]),
        key=group["key"],
        dists=[],
        pairs_by_id=group.get("pairs"),
    )
    dists = group["dists"]

    def refuse_all(code: str, message: str) -> LoadedGroup:
        for d in dists:
            out.errors.append(_error(group, d, d["dist_uri"], code, message))
        out.load_seconds = time.perf_counter() - start
        return out

    if allow_roots is not None and not within_roots(group["ref_uri"], allow_roots):
        return refuse_all(
            "outside_roots",
            f"reference {storage.display(group['ref_uri'])} lies outside the allowed locations",
        )
    try:
        ref = decoding.read_image(group["ref_uri"], max_pixels=max_pixels)
    except decoding.ImageError as e:
        return refuse_all(f"reference_{e.code}", f"reference unusable: {e.message}")
    height, width = ref.shape[:2]
    if min(height, width) < min_size:
        return refuse_all(
            "too_small", f"reference is {width}x{height}; the model needs at least {min_size} px on each side"
        )
    stats = metrics.ReferenceStats(ref)
    pixels = [ref]
    for d in dists:
        uri = d["dist_uri"]
        if allow_roots is not None and not within_roots(uri, allow_roots):
            out.errors.append(
                _error(
                    group,
                    d,
                    uri,
                    "outside_roots",
                    f"{storage.display(uri)} lies outside the allowed locations",
                )
            )
            continue
        try:
            img = decoding.read_image(uri, max_pixels=max_pixels)
        except decoding.ImageError as e:
            out.errors.append(_error(group, d, uri, e.code, e.message))
            continue
        if img.shape != ref.shape:
            h2, w2 = img.shape[:2]
            out.errors.append(
                _error(
                    group,
                    d,
                    uri,
                    "size_mismatch",
                    f"distorted image is {w2}x{h2} but its reference is {width}x{height}",
                )
            )
            continue
        m = metrics.compute_all(stats, img)
        nbytes = d.get("bytes")
        bpp = None if nbytes is None else nbytes * 8.0 / (width * height)
        out.dists.append(
            {**d, "dist_uri": storage.display(uri), "width": width, "height": height, "bpp": bpp, **m}
        )
        pixels.append(img)
    out.patches = tiling.patches(np.stack(pixels), patch)
    out.load_seconds = time.perf_counter() - start
    return out
