"""Finding and reading a sweep's references: a folder or bucket prefix of images, one image, a table, or the
bundled sample photos (``samples:``)."""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.image import decoding, samples
from pipeline.io import storage, tables

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


def _from_samples(uri: str) -> list[Reference]:
    try:
        names, max_side = samples.parse_samples_uri(uri)
    except samples.SampleError as e:
        raise SweepInputError(str(e)) from None
    return [Reference(n, samples.sample_uri(n, max_side), _slug(n)) for n in names]


def _from_table(uri: str) -> list[Reference]:
    import pandas as pd

    shown = storage.display(uri)
    table = tables.read_table(
        uri,
        error=SweepInputError,
        what="references table",
        column_types={"ref_id": pa.string(), "ref_uri": pa.string()},
    )
    df = table.to_pandas()
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
