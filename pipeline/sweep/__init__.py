"""Codec sweeps: encode every reference with each codec at each setting, decode, write what `evaluate` needs.

The work for one reference is pure and runs anywhere (:func:`sweep_reference`): read and normalise the reference
once (the :mod:`pipeline.image.decoding` policy), write it as ``refs/<ref>.png``, then for every setting encode, decode,
write the decoded image and (optionally) the bitstream, and finally write ``parts/<ref>.parquet`` with its manifest
rows. Tasks write to the output URI themselves; only small metadata goes back to the driver. :func:`run_sweep`
schedules that work as a Ray Data job (or a plain loop) and writes the tables.

Output layout (all paths in the manifest are relative to its folder, so the folder is portable)::

    manifest.parquet                         schemas.SWEEP_MANIFEST (+ source_uri)
    codecs.parquet                           schemas.CODECS: one row per codec and version
    errors/sweep.parquet                     schemas.ERRORS: this run's failures (empty when none)
    refs/<ref>.png                           the reference as encoded: 8-bit RGB after the odd-input policy
    images/<ref>/<codec>/<setting>.png       decoded images, lossless
    bitstreams/<ref>/<codec>/<setting>.<ext> with keep_bitstreams
    parts/<ref>.parquet                      per-reference rows: what a rerun reuses

A rerun skips every (reference, setting) whose row is in the reference's part, made from the same source with the
codec version installed now, and whose files exist; the manifest is rebuilt from the parts, without duplicates.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.codecs import Setting, get_codec, parse_spec
from pipeline.image import decoding, samples
from pipeline.io import schemas, storage
from pipeline.runs.provenance import new_run_id

STAGE = "sweep"
TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


class SweepInputError(ValueError):
    """References or an output the sweep cannot use at all (nothing found, unreadable table, unwritable output)."""


def image_suffixes() -> tuple[str, ...]:
    """File extensions Pillow can open: the files of a references folder that are taken as images."""
    from PIL import Image

    return tuple(sorted(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).strip(".") or "_"


@dataclass(frozen=True)
class Reference:
    """A reference image: its id, where it is read from (a URI or ``samples:<name>``), its file-safe name."""

    ref_id: str
    source: str
    slug: str


# --- finding references -----------------------------------------------------------------------------------


def _from_samples(uri: str) -> list[Reference]:
    try:
        names, max_side = samples.parse_samples_uri(uri)
    except samples.SampleError as e:
        raise SweepInputError(str(e)) from None
    return [Reference(n, samples.sample_uri(n, max_side), _slug(n)) for n in names]


def _from_table(uri: str) -> list[Reference]:
    import pandas as pd

    shown = storage.display(uri)
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise SweepInputError(f"references table {shown} does not exist") from None
    except OSError as e:
        raise SweepInputError(f"cannot read references table {shown}: {storage.redact(str(e))}") from None
    try:
        if uri.lower().endswith((".parquet", ".pq")):
            df = pq.read_table(io.BytesIO(data)).to_pandas()
        else:
            df = pd.read_csv(io.BytesIO(data), sep="\t" if uri.lower().endswith(".tsv") else ",", dtype=str)
    except Exception as e:  # pandas and pyarrow raise many types for a malformed file
        raise SweepInputError(f"{shown} is not a readable table: {e}") from None
    missing = [c for c in ("ref_id", "ref_uri") if c not in df.columns]
    if missing:
        raise SweepInputError(
            f"references table {shown} lacks column(s) {', '.join(missing)}; found: {', '.join(map(str, df.columns))}"
        )
    base = storage.parent(uri)
    by_id: dict[str, str] = {}
    for i, (ref_id, ref_uri) in enumerate(zip(df["ref_id"], df["ref_uri"], strict=True)):
        if pd.isna(ref_id) or pd.isna(ref_uri) or not str(ref_id).strip() or not str(ref_uri).strip():
            raise SweepInputError(f"references table {shown}: row {i + 1} has an empty ref_id or ref_uri")
        resolved = storage.resolve(str(ref_uri).strip(), base)
        if by_id.setdefault(str(ref_id), resolved) != resolved:
            raise SweepInputError(f"references table {shown}: ref_id '{ref_id}' names two different files")
    return [Reference(ref_id, src, _slug(ref_id)) for ref_id, src in by_id.items()]


def _from_folder(uri: str) -> tuple[list[Reference], list[str]]:
    suffixes = image_suffixes()
    files = [u for u in storage.listdir(uri) if not posixpath.basename(u).startswith(".")]
    chosen = [u for u in files if u.lower().endswith(suffixes)]
    ignored = [posixpath.basename(u) for u in files if u not in chosen]
    stems: dict[str, int] = {}
    for u in chosen:
        stem = posixpath.splitext(posixpath.basename(u))[0]
        stems[stem] = stems.get(stem, 0) + 1
    refs = []
    for u in chosen:
        name = posixpath.basename(u)
        stem = posixpath.splitext(name)[0]
        ref_id = stem if stems[stem] == 1 else name  # a.png and a.tif: keep both, named by file
        refs.append(Reference(ref_id, u, _slug(ref_id)))
    return refs, ignored


def find_references(refs: str, *, limit: int | None = None) -> tuple[list[Reference], list[str]]:
    """The references ``refs`` names, and the names of files in a references folder that were not images.

    ``refs`` is ``samples:[names][?max_side=N]``, a table (CSV/TSV/Parquet with ``ref_id, ref_uri``; relative URIs
    resolve against its folder), a single image, or a folder / bucket prefix (its image files, not recursive).
    Raises :class:`SweepInputError` when nothing usable is found.
    """
    shown = storage.display(refs)
    ignored: list[str] = []
    if samples.is_samples_uri(refs):
        found = _from_samples(refs)
    elif refs.lower().endswith(TABLE_SUFFIXES):
        found = _from_table(refs)
    else:
        fs, path = storage.filesystem(refs)
        try:
            is_file = fs.isfile(path)
        except OSError as e:
            raise SweepInputError(f"cannot read references at {shown}: {storage.redact(str(e))}") from None
        if is_file:
            name = posixpath.basename(path)
            found = [Reference(posixpath.splitext(name)[0], refs, _slug(posixpath.splitext(name)[0]))]
        else:
            found, ignored = _from_folder(refs)
    if not found:
        extra = f" (ignored non-image files: {', '.join(ignored[:10])})" if ignored else ""
        raise SweepInputError(f"no reference images found at {shown}{extra}")
    slugs: dict[str, str] = {}
    for r in found:
        other = slugs.setdefault(r.slug, r.ref_id)
        if other != r.ref_id:
            raise SweepInputError(f"ref_ids '{other}' and '{r.ref_id}' would share the file name '{r.slug}'")
    return (found[:limit] if limit else found), ignored


def load_reference(ref: Reference, *, max_pixels: int | None = decoding.DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The reference as (H, W, 3) uint8 RGB following the :mod:`pipeline.image.decoding` policy; :class:`ImageError`."""
    if not samples.is_samples_uri(ref.source):
        return decoding.read_image(ref.source, max_pixels=max_pixels)
    try:
        names, max_side = samples.parse_samples_uri(ref.source)
        rgb = samples.load_sample(names[0], max_side)
    except Exception as e:  # skimage missing, a data file missing from the installation
        raise decoding.ImageError("sample", f"{ref.source}: cannot load the bundled photo ({e})") from None
    if max_pixels is not None and rgb.shape[0] * rgb.shape[1] > max_pixels:
        raise decoding.ImageError(
            "too_large", f"{ref.source}: refused, larger than the {max_pixels:,}-pixel limit"
        )
    return rgb


# --- the per-reference work ------------------------------------------------------------------------------


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
    return {
        "run_id": config.run_id,
        "stage": STAGE,
        "ref_id": ref.ref_id,
        "dist_id": dist,
        "uri": storage.display(ref.source),
        "error": code,
        "message": storage.redact(message),
    }


def _parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


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


def _encode_one(rgb: np.ndarray, s: Setting) -> tuple[bytes, np.ndarray, float, float]:
    codec = get_codec(s.codec)
    t0 = time.perf_counter()
    data = codec.encode(rgb, s.value)
    t1 = time.perf_counter()
    decoded = codec.decode(data)
    t2 = time.perf_counter()
    return data, decoded, (t1 - t0) * 1000.0, (t2 - t1) * 1000.0


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
            table = schemas.conform([*ordered, *keep_old], schemas.SWEEP_MANIFEST)
            storage.write_bytes(layout.part(ref), _parquet_bytes(table))
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
            data, decoded, encode_ms, decode_ms = _encode_one(rgb, s)
        except Exception as e:  # a codec refusing an input (e.g. too large for WebP) fails this setting only
            result.errors.append(
                _error(config, ref, "codec", f"{s.codec} {s.text}: {type(e).__name__}: {e}", did)
            )
            continue
        if decoded.shape != rgb.shape:
            message = f"{s.codec} {s.text}: decoded {decoded.shape[1]}x{decoded.shape[0]}, reference {w}x{h}"
            result.errors.append(_error(config, ref, "size_mismatch", message, did))
            continue
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
            "encode_ms": encode_ms,
            "decode_ms": decode_ms,
            "bitstream_uri": bitstream_rel,
            "source_uri": storage.display(ref.source),
        }
        result.new_ids.append(did)
    return rows


# --- running a sweep ----------------------------------------------------------------------------------------


def _sweep_item(item: dict[str, Any], config: SweepConfig) -> dict[str, str]:
    """Ray Data adapter: one row in (a reference), one row out (its result as JSON)."""
    ref = Reference(item["ref_id"], item["source"], item["slug"])
    return {"ref_id": ref.ref_id, "result": sweep_reference(ref, config).to_json()}


def _run_ray(references: list[Reference], config: SweepConfig, progress: bool) -> list[ReferenceResult]:
    from pipeline.runs import ray_runtime

    ray_runtime.ensure_ray()
    import ray.data

    ray_runtime.data_context(progress)
    items = [asdict(r) for r in references]
    ds = ray.data.from_items(items, override_num_blocks=len(items))
    ds = ds.map(_sweep_item, fn_kwargs={"config": config}, num_cpus=1)
    return [ReferenceResult.from_json(row["result"]) for row in ds.iter_rows()]


def _run_local(references: list[Reference], config: SweepConfig, progress: bool) -> list[ReferenceResult]:
    if not progress:
        return [sweep_reference(r, config) for r in references]
    from rich.console import Console
    from rich.progress import track

    return [
        sweep_reference(r, config)
        for r in track(references, description="sweep", console=Console(stderr=True), transient=True)
    ]


EXECUTORS: dict[str, Callable[[list[Reference], SweepConfig, bool], list[ReferenceResult]]] = {
    "ray": _run_ray,
    "local": _run_local,
}


@dataclass
class SweepSummary:
    """What a sweep did: counts, throughput, and where its outputs are."""

    run_id: str
    output: str
    manifest_uri: str
    codecs_uri: str
    errors_uri: str
    n_refs: int
    n_refs_failed: int
    n_rows: int
    n_encoded: int
    n_reused: int
    n_errors: int
    seconds: float
    encodes_per_s: dict[str, float]  # per codec: new encodes / encode CPU time (one core)
    ignored_files: list[str] = field(default_factory=list)
    keep_bitstreams: bool = False

    @property
    def exit_code(self) -> int:
        """0 when everything succeeded, 1 when some references or settings failed (see the errors table)."""
        return 1 if self.n_errors else 0


def _write_table(uri: str, rows: list[dict] | pa.Table, schema: pa.Schema) -> None:
    storage.write_bytes(uri, _parquet_bytes(schemas.conform(rows, schema)))


def codecs_table(rows: list[dict], settings: list[Setting]) -> pa.Table:
    """One row per codec and version: the versions the rows were made with (installed ones for codecs with none)."""
    seen: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["codec"], row["codec_version"])
        if key not in seen:
            seen[key] = get_codec(row["codec"]).metadata(row["codec_version"])
    for name in dict.fromkeys(s.codec for s in settings):
        if not any(c == name for c, _ in seen):
            meta = get_codec(name).metadata()
            seen[(name, meta["codec_version"])] = meta
    return schemas.conform(list(seen.values()), schemas.CODECS)


def run_sweep(
    refs: str,
    spec: str | Mapping[str, Any],
    output: str,
    *,
    keep_bitstreams: bool = False,
    max_pixels: int | None = decoding.DEFAULT_MAX_PIXELS,
    limit: int | None = None,
    executor: Literal["ray", "local"] = "ray",
    progress: bool = True,
    run_id: str | None = None,
    log: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Sweep ``refs`` with the codec ``spec`` into ``output``; see the module docstring for the layout.

    Raises :class:`pipeline.codecs.SpecError` for a bad spec and :class:`SweepInputError` when no reference is
    found or the output cannot be written. Failures of single references or settings go to the errors table.
    ``log`` receives one line saying what is about to run.
    """
    t0 = time.perf_counter()
    settings = parse_spec(spec)
    references, ignored = find_references(refs, limit=limit)
    config = SweepConfig(output, tuple(settings), keep_bitstreams, max_pixels, run_id or new_run_id("sweep"))
    layout = Layout(output)
    try:  # fail early, before any work, when the output cannot be written; replaced at the end
        _write_table(layout.errors, [], schemas.ERRORS)
    except Exception as e:
        raise SweepInputError(
            f"cannot write to {storage.display(output)}: {storage.redact(str(e))}"
        ) from None

    if log:
        n_codecs = len({s.codec for s in settings})
        log(
            f"sweeping {len(references)} reference(s) x {len(settings)} setting(s) of {n_codecs} codec(s) "
            f"= {len(references) * len(settings)} encodes ({executor}) into {storage.display(output)}"
        )
    results = EXECUTORS[executor](references, config, progress)
    order = {r.ref_id: i for i, r in enumerate(references)}
    results.sort(key=lambda r: order[r.ref_id])

    rows: list[dict] = []
    seen: set[str] = set()
    for r in results:
        for row in r.rows:
            if row["dist_id"] not in seen:
                seen.add(row["dist_id"])
                rows.append(row)
    errors = [e for r in results for e in r.errors]
    _write_table(layout.manifest, rows, schemas.SWEEP_MANIFEST)
    storage.write_bytes(layout.codecs, _parquet_bytes(codecs_table(rows, settings)))
    _write_table(layout.errors, errors, schemas.ERRORS)

    new = {i for r in results for i in r.new_ids}
    counts: dict[str, int] = {}
    cpu_ms: dict[str, float] = {}
    for row in rows:
        if row["dist_id"] in new:
            counts[row["codec"]] = counts.get(row["codec"], 0) + 1
            cpu_ms[row["codec"]] = cpu_ms.get(row["codec"], 0.0) + row["encode_ms"]
    return SweepSummary(
        run_id=config.run_id,
        output=output,
        manifest_uri=layout.manifest,
        codecs_uri=layout.codecs,
        errors_uri=layout.errors,
        n_refs=len(references),
        n_refs_failed=sum(r.reference_failed for r in results),
        n_rows=len(rows),
        n_encoded=len(new),
        n_reused=sum(r.n_reused for r in results),
        n_errors=len(errors),
        seconds=time.perf_counter() - t0,
        encodes_per_s={c: counts[c] * 1000.0 / cpu_ms[c] for c in counts if cpu_ms[c] > 0},
        ignored_files=ignored,
        keep_bitstreams=keep_bitstreams,
    )
