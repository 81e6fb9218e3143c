"""The work for one reference, pure and runnable anywhere (:func:`sweep_reference`).

Read and normalise the reference once (the :mod:`pipeline.image.decoding` policy), write it as
``refs/<ref>.png``, then for every setting encode, decode, write the decoded image and (optionally) the bitstream,
and finally write ``parts/<ref>.parquet`` with its manifest rows. Tasks write to the output URI themselves; only
small metadata goes back to the driver. A rerun skips every (reference, setting) whose row is in the reference's
part, made from the same source with the codec version installed now, and whose files exist.

Speed: every row carries the wall and CPU time of its one encode and decode (single-threaded encoders, so the CPU
time is per core) and the megapixels per second they make.

Target bpp (a ``bpp=T`` setting): the codec's knob is bisected per image over its range in steps of
``knob_step`` (whole numbers for ``q``), assuming the size falls as quality falls, to the highest-quality value whose
bitstream is at or under T bits per pixel. The row records that value (``knob_value``; the knob's name is in
``codecs.parquet``), the target (``target_bpp``) and the bpp reached (``bpp``); the timings are those of the kept
encode. When even the lowest quality is above T the setting is an error row (``bpp_unreachable``) naming the image
and what was reached; the other settings go on.
"""

from __future__ import annotations

import io
import json
import posixpath
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.codecs import Codec, Setting, get_codec
from pipeline.codecs.base import fmt
from pipeline.image import decoding
from pipeline.io import schemas, storage, tables
from pipeline.io.records import ErrorRow
from pipeline.sweep.references import Reference, load_reference

STAGE = "sweep"


@dataclass(frozen=True)
class Layout:
    """Where a sweep's outputs go under ``output``; ``*_rel`` paths are what the manifest records."""

    output: str

    def uri(self, rel: str) -> str:
        return storage.join(self.output, *rel.split("/"))

    @property
    def manifest(self) -> str:
        return self.uri("manifest.parquet")

    @property
    def codecs(self) -> str:
        return self.uri("codecs.parquet")

    @property
    def errors(self) -> str:
        return self.uri("errors/sweep.parquet")

    def part(self, ref: Reference) -> str:
        return self.uri(f"parts/{ref.slug}.parquet")

    @staticmethod
    def ref_rel(ref: Reference) -> str:
        return f"refs/{ref.slug}.png"

    @staticmethod
    def dist_rel(ref: Reference, s: Setting) -> str:
        return f"images/{ref.slug}/{s.codec}/{s.slug}.png"

    @staticmethod
    def bitstream_rel(ref: Reference, s: Setting) -> str:
        return f"bitstreams/{ref.slug}/{s.codec}/{s.slug}.{get_codec(s.codec).extension}"


def dist_id(ref: Reference, s: Setting) -> str:
    """The stable unique id of one decoded image: ``<ref_id>/<codec>/<setting>``."""
    return f"{ref.ref_id}/{s.codec}/{s.text}"


@dataclass(frozen=True)
class SweepConfig:
    """What every reference task needs: where to write, which settings, the size guard."""

    output: str
    settings: tuple[Setting, ...]
    keep_bitstreams: bool = False
    max_pixels: int | None = decoding.DEFAULT_MAX_PIXELS
    run_id: str = ""


@dataclass
class ReferenceResult:
    """What one reference task sends back: its manifest rows (new and reused) and error rows."""

    ref_id: str
    rows: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    new_ids: list[str] = field(default_factory=list)  # dist_ids encoded by this run
    n_reused: int = 0
    reference_failed: bool = False
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> ReferenceResult:
        return cls(**json.loads(text))


def _error(config: SweepConfig, ref: Reference, code: str, message: str, dist: str | None = None) -> dict:
    row = ErrorRow.make(STAGE, code, message, ref_id=ref.ref_id, dist_id=dist, uri=ref.source)
    return row.to_dict(config.run_id)


def _read_part(uri: str) -> list[dict]:
    try:
        return pq.read_table(io.BytesIO(storage.read_bytes(uri))).to_pylist()
    except FileNotFoundError:
        return []
    except (pa.ArrowInvalid, OSError):
        return []  # a damaged part is redone, not trusted


class _Listing:
    """File names per output folder, listed once each (one LIST per folder instead of one HEAD per file)."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.cache: dict[str, set[str]] = {}

    def has(self, rel: str | None) -> bool:
        if not rel:
            return False
        folder, name = posixpath.split(rel)
        if folder not in self.cache:
            self.cache[folder] = {posixpath.basename(u) for u in storage.listdir(self.layout.uri(folder))}
        return name in self.cache[folder]


@dataclass
class Encoded:
    """One kept encode: the bitstream, the knob value it was made at, and its wall and CPU milliseconds."""

    data: bytes
    value: float
    ms: float
    cpu_ms: float


class BppUnreachable(Exception):
    """A bpp= target that even the codec's lowest quality does not reach."""


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - w0) * 1000.0, (time.process_time() - c0) * 1000.0


def _encode_at(codec: Codec, rgb: np.ndarray, value: float, options: dict[str, str]) -> Encoded:
    data, ms, cpu_ms = _timed(lambda: codec.encode(rgb, value, options))
    return Encoded(data, value, ms, cpu_ms)


def knob_candidates(codec: Codec) -> list[float]:
    """Every knob value a bpp= search may pick, from the lowest quality to the highest."""
    n = round((codec.knob_max - codec.knob_min) / codec.knob_step)
    values = [round(codec.knob_min + i * codec.knob_step, 10) for i in range(n + 1)]
    values = [int(v) for v in values] if codec.integer_knob else values
    return values if codec.higher_is_better_quality else values[::-1]


def search_bpp(codec: Codec, rgb: np.ndarray, target: float, options: dict[str, str]) -> Encoded:
    """The highest-quality encode at or under ``target`` bpp, by bisection; :class:`BppUnreachable` if none."""
    pixels = rgb.shape[0] * rgb.shape[1]
    candidates = knob_candidates(codec)
    tried: dict[int, Encoded] = {}

    def bpp(i: int) -> float:
        if i not in tried:
            tried[i] = _encode_at(codec, rgb, candidates[i], options)
        return len(tried[i].data) * 8.0 / pixels

    if bpp(0) > target:
        raise BppUnreachable(
            f"the lowest quality, {codec.knob}={fmt(candidates[0])}, gives {bpp(0):.4f} bpp, above the target"
        )
    good, bad = 0, len(candidates)
    if bpp(len(candidates) - 1) <= target:
        good = len(candidates) - 1
    while bad - good > 1:
        mid = (good + bad) // 2
        if bpp(mid) <= target:
            good = mid
        else:
            bad = mid
    return tried[good]


def _encode_one(rgb: np.ndarray, s: Setting) -> tuple[Encoded, np.ndarray, float, float]:
    codec = get_codec(s.codec)
    options = codec.resolve(s.option_values)
    target = s.target_bpp
    kept = (
        _encode_at(codec, rgb, s.value, options)
        if target is None
        else search_bpp(codec, rgb, target, options)
    )
    decoded, ms, cpu_ms = _timed(lambda: codec.decode(kept.data))
    return kept, decoded, ms, cpu_ms


def sweep_reference(ref: Reference, config: SweepConfig) -> ReferenceResult:
    """Encode one reference at every setting of ``config`` (reusing what an earlier run wrote); never raises."""
    t_start = time.perf_counter()
    layout = Layout(config.output)
    result = ReferenceResult(ref.ref_id)
    source = storage.display(ref.source)
    try:
        previous = {row["dist_id"]: row for row in _read_part(layout.part(ref))}
        listing = _Listing(layout)
        installed = {c: get_codec(c).version() for c in dict.fromkeys(s.codec for s in config.settings)}
        reusable: dict[str, dict] = {}
        todo: list[Setting] = []
        for s in config.settings:
            row = previous.get(dist_id(ref, s))
            ok = (
                row is not None
                and row.get("source_uri") == source
                and row.get("codec_version") == installed[s.codec]
                and listing.has(row.get("dist_uri"))
                and (not config.keep_bitstreams or listing.has(row.get("bitstream_uri")))
            )
            if ok:
                reusable[dist_id(ref, s)] = row
            else:
                todo.append(s)
        new_rows: dict[str, dict] = {}
        if todo or not listing.has(Layout.ref_rel(ref)):
            try:
                rgb = load_reference(ref, max_pixels=config.max_pixels)
            except decoding.ImageError as e:
                result.errors.append(_error(config, ref, e.code, e.message))
                result.reference_failed = True
                todo = []
            else:
                storage.write_bytes(layout.uri(Layout.ref_rel(ref)), decoding.encode_png(rgb))
                new_rows = _encode_settings(ref, rgb, todo, config, layout, result)
        ordered = []
        for s in config.settings:
            did = dist_id(ref, s)
            row = new_rows.get(did) or reusable.get(did)
            if row is not None:
                ordered.append(row)
        result.rows = ordered
        result.n_reused = sum(1 for r in ordered if r["dist_id"] in reusable)
        if new_rows:
            keep_old = [r for did, r in previous.items() if did not in new_rows and did not in reusable]
            tables.write_parquet(
                layout.part(ref), schemas.conform([*ordered, *keep_old], schemas.SWEEP_MANIFEST)
            )
    except Exception as e:  # storage failures and the unforeseen: this reference fails, the sweep goes on
        result.errors.append(_error(config, ref, "internal", f"{source}: {type(e).__name__}: {e}"))
        result.reference_failed = True
    result.seconds = time.perf_counter() - t_start
    return result


def _encode_settings(
    ref: Reference,
    rgb: np.ndarray,
    todo: list[Setting],
    config: SweepConfig,
    layout: Layout,
    result: ReferenceResult,
) -> dict[str, dict]:
    h, w = rgb.shape[:2]
    versions: dict[str, str] = {}
    rows: dict[str, dict] = {}
    for s in todo:
        did = dist_id(ref, s)
        codec = get_codec(s.codec)
        try:
            kept, decoded, decode_ms, decode_cpu_ms = _encode_one(rgb, s)
        except BppUnreachable as e:
            message = f"{storage.display(ref.source)}: {s.codec} {s.text} is out of reach: {e}"
            result.errors.append(_error(config, ref, "bpp_unreachable", message, did))
            continue
        except Exception as e:  # a codec refusing an input (e.g. too large for WebP) fails this setting only
            result.errors.append(
                _error(config, ref, "codec", f"{s.codec} {s.text}: {type(e).__name__}: {e}", did)
            )
            continue
        if decoded.shape != rgb.shape:
            message = f"{s.codec} {s.text}: decoded {decoded.shape[1]}x{decoded.shape[0]}, reference {w}x{h}"
            result.errors.append(_error(config, ref, "size_mismatch", message, did))
            continue
        data = kept.data
        storage.write_bytes(layout.uri(Layout.dist_rel(ref, s)), decoding.encode_png(decoded))
        bitstream_rel = None
        if config.keep_bitstreams:
            bitstream_rel = Layout.bitstream_rel(ref, s)
            storage.write_bytes(layout.uri(bitstream_rel), data)
        if s.codec not in versions:
            versions[s.codec] = codec.version()
        rows[did] = {
            "ref_id": ref.ref_id,
            "ref_uri": Layout.ref_rel(ref),
            "dist_id": did,
            "dist_uri": Layout.dist_rel(ref, s),
            "codec": s.codec,
            "codec_version": versions[s.codec],
            "setting": s.text,
            "bytes": len(data),
            "width": w,
            "height": h,
            "bpp": len(data) * 8.0 / (w * h),
            "encode_ms": kept.ms,
            "decode_ms": decode_ms,
            "bitstream_uri": bitstream_rel,
            "encode_cpu_ms": kept.cpu_ms,
            "decode_cpu_ms": decode_cpu_ms,
            "encode_mp_per_s": _mp_per_s(w * h, kept.ms),
            "decode_mp_per_s": _mp_per_s(w * h, decode_ms),
            "knob_value": float(kept.value),
            "target_bpp": s.target_bpp,
            "codec_options": json.dumps(codec.resolve(s.option_values)),
            "source_uri": storage.display(ref.source),
        }
        result.new_ids.append(did)
    return rows


def _mp_per_s(pixels: int, ms: float) -> float | None:
    return pixels / 1e6 / (ms / 1000.0) if ms > 0 else None
