"""The CPU side of a reference group: read, check, measure, tile and choose the pairs, ahead of the scoring actors.

:func:`load_group` turns a :class:`pipeline.io.records.ReferenceGroup` into a :class:`LoadedGroup`: the decoded
images cut into the shared patch grid, the classic metrics of every usable distorted image, the (i, j) index pairs
to score, and an error row for every image that could not be used. Nothing here needs a GPU, so a GPU actor never
waits on image decoding, and the actor only encodes and compares.

Rows are isolated: whatever goes wrong with one distorted image (unreadable, undecodable, the wrong size, or any
unexpected failure while measuring it) becomes that image's error row and the group's other images go on. Only a
reference that cannot be used fails the whole group.

What decoding did to each image and to its reference (alpha composited, bits dropped, orientation applied) travels
with the image as ``conversions``/``ref_conversions``; an animation, or transparency that differs from the
reference's, is refused instead (docs/inputs.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.image import decoding, metrics, tiling
from pipeline.io import storage
from pipeline.io.records import DistortedImage, ErrorRow, ReferenceGroup
from pipeline.scoring import pairing

STAGE = "load"
MESSAGE_CHARS = 300  # an error message is one line of at most this many characters


@dataclass
class MeasuredImage:
    """A usable distorted image: its manifest record, its size, its rate and its classic metrics."""

    dist_id: str
    dist_uri: str  # as shown (no credentials)
    codec: str | None
    codec_version: str | None
    setting: str | None
    bytes: int | None
    width: int
    height: int
    bpp: float | None
    metrics: dict[str, float | None]  # the selected metrics by name (default psnr, psnr_y, ms_ssim)
    extras: dict = field(default_factory=dict)
    conversions: str = ""  # what decoding did to this image ("; "-separated, empty when nothing)
    ref_conversions: str = ""  # what decoding did to its reference

    def to_row(self) -> dict:
        """As an Arrow struct: typed fields, the per-manifest ``extras`` as one JSON string."""
        return {**{k: getattr(self, k) for k in _FIELDS}, **{k: getattr(self, k) for k in _TEXT},
                "metrics": dict(self.metrics),
                "extras": json.dumps(self.extras)}  # fmt: skip

    @classmethod
    def from_row(cls, row: dict) -> MeasuredImage:
        extras = row.get("extras")
        return cls(**{k: row.get(k) for k in _FIELDS}, **{k: row.get(k) or "" for k in _TEXT},
                   metrics=dict(row.get("metrics") or {}),
                   extras=json.loads(extras) if isinstance(extras, str) else dict(extras or {}))  # fmt: skip


_FIELDS = ("dist_id", "dist_uri", "codec", "codec_version", "setting", "bytes", "width", "height", "bpp")
_TEXT = ("conversions", "ref_conversions")


def no_patches(patch: int) -> np.ndarray:
    """The patches of a group with nothing to score: zero images, same rank as real patches."""
    return np.zeros((0, 0, 3, patch, patch), dtype=np.uint8)


@dataclass
class LoadedGroup:
    ref_id: str
    ref_uri: str  # as shown (no credentials)
    key: str
    dists: list[MeasuredImage]  # the usable distorted images, in manifest order
    errors: list[ErrorRow] = field(default_factory=list)
    patches: np.ndarray = field(default_factory=lambda: no_patches(1))  # (1 + len(dists), K, 3, h, w) uint8
    pairs: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), dtype=np.int64))  # (P, 2) into dists
    load_seconds: float = 0.0

    @property
    def has_patches(self) -> bool:
        return self.patches.shape[0] > 0

    @property
    def n_patches(self) -> int:
        return int(self.patches.shape[1]) if self.has_patches else 0

    def pair_list(self) -> list[tuple[int, int]]:
        return [(int(i), int(j)) for i, j in self.pairs]


def one_line(e: BaseException) -> str:
    """``Type: message`` on one line, credentials redacted, at most :data:`MESSAGE_CHARS` characters."""
    text = " ".join(f"{type(e).__name__}: {e}".split())
    return storage.redact(text)[:MESSAGE_CHARS]


def index_pairs(
    group: ReferenceGroup, dists: list[MeasuredImage], strategy: str, tolerance: float
) -> list[tuple[int, int]]:
    """The (i, j) indices into ``dists`` to score: the group's explicit pairs if it has any, else ``strategy``."""
    if group.pairs is not None:
        return pairing.pairs_by_id([d.dist_id for d in dists], group.pairs)
    items = [pairing.Item(codec=d.codec, bpp=d.bpp) for d in dists]
    return pairing.pairs(items, strategy, tolerance=tolerance)


def _read(uri: str, allow_roots: list[str] | None, max_pixels: int | None) -> decoding.Decoded:
    """The decoded image at ``uri`` with its conversions; any failure to reach or read it is an
    :class:`decoding.ImageError`."""
    try:
        if allow_roots is not None:
            storage.real(uri)  # a path that cannot name a file (a NUL byte) is unreadable, not outside
        location = storage.confine(uri, allow_roots)
    except storage.OutsideRoots:
        raise decoding.ImageError(
            "outside_roots", f"{storage.display(uri)} lies outside the allowed locations"
        ) from None
    except (ValueError, OSError) as e:
        raise decoding.ImageError(
            "unreadable", f"{storage.display(uri)}: cannot be read ({one_line(e)})"
        ) from None
    try:
        return decoding.read_decoded(location, max_pixels=max_pixels)
    except decoding.ImageError:
        raise
    except Exception as e:  # e.g. a NUL byte in a path (ValueError inside open), a broken filesystem driver
        raise decoding.ImageError(
            "unreadable", f"{storage.display(uri)}: cannot be read ({one_line(e)})"
        ) from None


def _animated(uri: str, decoded: decoding.Decoded) -> str:
    return (f"{storage.display(uri)} is an animation of {decoded.frames} frames; only still images are scored "
            "(score its frames as separate images)")  # fmt: skip


def comparable(ref: decoding.Decoded, dist: decoding.Decoded) -> tuple[str, str] | None:
    """Why a distorted image of the reference's size still cannot be compared with it, as (code, message), or
    None. Both sides are composited on white, which hides a difference of transparency: a pixel the reference
    leaves transparent and the image paints white look the same. So an image with transparency is compared only
    with a reference with the same transparency. A reference with transparency and an opaque image is allowed:
    that is a codec without alpha encoding the reference as displayed on white (as ``prfeval sweep`` does), and
    it is compared with that same composite. See docs/inputs.md."""
    if dist.alpha is None:
        return None
    if ref.alpha is None:
        return ("alpha_mismatch", "the image has transparent pixels and its reference has none: composited on "
                "white, a transparent pixel would pass for a white one")  # fmt: skip
    if not np.array_equal(ref.alpha, dist.alpha):
        share = float(np.mean(ref.alpha != dist.alpha))
        return ("alpha_mismatch", f"the transparency differs from the reference's on {100 * share:.2g}% of the "
                "pixels: composited on white, the difference would be hidden")  # fmt: skip
    return None


def load_group(
    group: ReferenceGroup | dict,
    *,
    patch: int,
    min_size: int = 32,
    max_pixels: int | None = decoding.DEFAULT_MAX_PIXELS,
    allow_roots: list[str] | None = None,
    pairs: str = "all",
    match_tolerance: float = pairing.DEFAULT_MATCH_TOLERANCE,
    metric_names: tuple[str, ...] | list[str] | None = None,
) -> LoadedGroup:
    """Read the reference and its distorted images, check them, measure them, cut patches, choose the pairs.

    ``pairs``/``match_tolerance`` choose the pairs (see :mod:`pipeline.scoring.pairing`) unless the group names
    its own (``group.pairs``). ``metric_names`` names the full-reference metrics to measure (default:
    :data:`pipeline.image.metrics.DEFAULT_METRICS`).
    """
    start = time.perf_counter()
    group = ReferenceGroup.of(group)
    out = LoadedGroup(ref_id=group.ref_id, ref_uri=storage.display(group.ref_uri), key=group.key, dists=[],
                      patches=no_patches(patch))  # fmt: skip

    def error(d: DistortedImage, code: str, message: str) -> ErrorRow:
        return ErrorRow.make(STAGE, code, message, ref_id=group.ref_id, dist_id=d.dist_id, uri=d.dist_uri)

    def refuse_all(code: str, message: str) -> LoadedGroup:
        out.errors.extend(error(d, code, message) for d in group.dists)
        out.load_seconds = time.perf_counter() - start
        return out

    try:
        ref_decoded = _read(group.ref_uri, allow_roots, max_pixels)
    except decoding.ImageError as e:
        if e.code == "outside_roots":
            return refuse_all(e.code, f"reference {e.message}")
        return refuse_all(f"reference_{e.code}", f"reference unusable: {e.message}")
    if ref_decoded.frames > 1:
        return refuse_all(
            "reference_animated", f"reference unusable: {_animated(group.ref_uri, ref_decoded)}"
        )
    ref = ref_decoded.rgb
    height, width = ref.shape[:2]
    if min(height, width) < min_size:
        return refuse_all(
            "too_small", f"reference is {width}x{height}; the model needs at least {min_size} px on each side"
        )
    try:
        stats = metrics.ReferenceStats(ref)
    except Exception as e:  # the reference decoded but cannot be measured
        return refuse_all("reference_internal", f"reference unusable: {one_line(e)}")
    pixels = [ref]
    for d in group.dists:
        try:
            decoded = _read(d.dist_uri, allow_roots, max_pixels)
        except decoding.ImageError as e:
            out.errors.append(error(d, e.code, e.message))
            continue
        if decoded.frames > 1:
            out.errors.append(error(d, "animated", _animated(d.dist_uri, decoded)))
            continue
        img = decoded.rgb
        if img.shape != ref.shape:
            h2, w2 = img.shape[:2]
            msg = f"distorted image is {w2}x{h2} but its reference is {width}x{height}"
            out.errors.append(error(d, "size_mismatch", msg))
            continue
        refusal = comparable(ref_decoded, decoded)
        if refusal is not None:
            out.errors.append(error(d, *refusal))
            continue
        try:
            measured = metrics.compute_all(stats, img, metric_names)
        except Exception as e:  # a failure while measuring this image loses this image only
            out.errors.append(
                error(d, "internal", f"cannot measure {storage.display(d.dist_uri)}: {one_line(e)}")
            )
            continue
        bpp = None if d.bytes is None else d.bytes * 8.0 / (width * height)
        out.dists.append(MeasuredImage(
            dist_id=d.dist_id, dist_uri=storage.display(d.dist_uri), codec=d.codec, codec_version=d.codec_version,
            setting=d.setting, bytes=d.bytes, width=width, height=height, bpp=bpp, metrics=measured,
            extras=dict(d.extras or {}), conversions=decoded.summary, ref_conversions=ref_decoded.summary,
        ))  # fmt: skip
        pixels.append(img)
    if out.dists:
        out.patches = tiling.patches(np.stack(pixels), patch)
    pair_list = index_pairs(group, out.dists, pairs, match_tolerance)
    out.pairs = np.asarray(pair_list, dtype=np.int64).reshape(-1, 2)
    out.load_seconds = time.perf_counter() - start
    return out
