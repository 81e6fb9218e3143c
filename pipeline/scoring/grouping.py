"""A validated manifest's reference groups, built block by block from its columns.

:class:`ManifestGroups` hands a manifest's groups (or those not finished yet) to the driver as Arrow tables of
input rows, one row per group (:data:`INPUT_SCHEMA`, the row :func:`pipeline.scoring.stages.group_row` makes of a
record), or as :class:`~pipeline.io.records.ReferenceGroup` records; only one block is ever built at a time.
:func:`plan` tells what scoring a manifest would do (groups, images, pairs by strategy, patches) from its columns
alone, for ``evaluate --dry-run``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.io import storage
from pipeline.io.jsonable import plain
from pipeline.io.records import DistortedImage, ReferenceGroup, group_key
from pipeline.scoring.manifest import Manifest, _codes, _dictionary, _plain_text

# One input row per reference group, as the driver hands groups to Ray Data (pipeline.scoring.stages).
DIST_TYPE = pa.struct([("dist_id", pa.string()), ("dist_uri", pa.string()), ("codec", pa.string()),
                       ("codec_version", pa.string()), ("setting", pa.string()), ("bytes", pa.int64()),
                       ("extras", pa.string())])  # fmt: skip
INPUT_SCHEMA = pa.schema([("key", pa.string()), ("ref_id", pa.string()), ("ref_uri", pa.string()),
                          ("dists", pa.list_(DIST_TYPE)), ("explicit_pairs", pa.bool_()),
                          ("pairs_by_id", pa.list_(pa.list_(pa.string())))])  # fmt: skip


def _extras_values(col: pa.ChunkedArray) -> list:
    """A carried column's values as plain Python values, as pandas reads them (an integer column with nulls as
    floats; missing values as None)."""
    if pa.types.is_integer(col.type) and col.null_count:
        col = col.cast(pa.float64())
    return [plain(v) for v in col.to_pylist()]


def input_rows(mf: Manifest, groups: np.ndarray) -> pa.Table:
    """The input rows (:data:`INPUT_SCHEMA`) of the groups numbered ``groups``: one row per group, its distorted
    images as a list of structs, URIs resolved, carried columns as one JSON string per image."""
    _, offsets = mf.grouping
    groups = np.asarray(groups, dtype=np.int64)
    sizes = offsets[groups + 1] - offsets[groups]
    sub = _plain_text(mf.block(groups))
    base = mf.base_dir
    dist_uri = pa.array([storage.resolve(u, base) for u in sub["dist_uri"].to_pylist()], pa.string())
    extras = mf.extra_columns
    if extras:
        values = [_extras_values(sub[c]) for c in extras]
        extras_json = pa.array([json.dumps(dict(zip(extras, row, strict=True))) for row in zip(*values, strict=True)],
                               pa.string())  # fmt: skip
    else:
        extras_json = pa.array(["{}"] * sub.num_rows, pa.string())
    fields = (
        [sub[c].combine_chunks() for c in ("dist_id",)]
        + [dist_uri]
        + [sub[c].combine_chunks() for c in ("codec", "codec_version", "setting", "bytes")]
    )
    dists = pa.StructArray.from_arrays([*fields, extras_json], fields=list(DIST_TYPE))
    starts = np.zeros(len(groups) + 1, dtype=np.int32)
    np.cumsum(sizes, out=starts[1:])
    ref_ids = mf.ref_ids().take(pa.array(groups)).to_pylist()
    return pa.Table.from_arrays(
        [
            pa.array([group_key(str(r)) for r in ref_ids], pa.string()),
            pa.array(ref_ids, pa.string()),
            sub["ref_uri"].combine_chunks().take(pa.array(starts[:-1]))
            if len(groups)
            else pa.array([], pa.string()),
            pa.ListArray.from_arrays(pa.array(starts), dists, type=INPUT_SCHEMA.field("dists").type),
            pa.array([False] * len(groups), pa.bool_()),
            pa.array([[]] * len(groups), INPUT_SCHEMA.field("pairs_by_id").type),
        ],
        schema=INPUT_SCHEMA,
    )


def record_of(row: dict) -> ReferenceGroup:
    """An input row (:data:`INPUT_SCHEMA`, as a dict) as a :class:`ReferenceGroup` record."""
    dists = [
        DistortedImage(
            **{k: d.get(k) for k in ("dist_id", "dist_uri", "codec", "codec_version", "setting", "bytes")},
            extras=json.loads(d["extras"]) if d.get("extras") else {},
        )
        for d in row["dists"]
    ]
    pairs = [list(p) for p in row["pairs_by_id"]] if row["explicit_pairs"] else None
    return ReferenceGroup(
        ref_id=row["ref_id"], ref_uri=row["ref_uri"], dists=dists, pairs=pairs, key=row["key"]
    )


class ManifestGroups:
    """A manifest's reference groups (or a selection of them), handed out block by block: as Arrow tables of
    input rows (:meth:`tables`) or as records (iteration), never all at once."""

    BLOCK = 1024  # groups per block when iterating records

    def __init__(self, manifest: Manifest, selected: np.ndarray | None = None):
        self.manifest = manifest
        self.selected = np.arange(manifest.n_groups) if selected is None else selected

    def __len__(self) -> int:
        return len(self.selected)

    def keys(self) -> list[str]:
        return [group_key(str(r)) for r in self.manifest.ref_ids().take(pa.array(self.selected)).to_pylist()]

    def without(self, keys: set[str]) -> ManifestGroups:
        """The groups whose key is not in ``keys`` (e.g. those already finished)."""
        if not keys:
            return self
        keep = np.fromiter((k not in keys for k in self.keys()), dtype=bool, count=len(self))
        return ManifestGroups(self.manifest, self.selected[keep])

    def tables(self, per_block: int) -> Iterator[pa.Table]:
        for start in range(0, len(self), max(1, per_block)):
            yield input_rows(self.manifest, self.selected[start : start + per_block])

    def __iter__(self) -> Iterator[ReferenceGroup]:
        for table in self.tables(self.BLOCK):
            yield from map(record_of, table.to_pylist())


# ---------------------------------------------------------------- what a run would do


@dataclass
class Plan:
    """What scoring a manifest would do, found from its columns alone (no image is opened)."""

    groups: int
    images: int
    errors: int  # manifest rows that would be error rows
    pairs: dict[str, int | None]  # by strategy; None when it cannot be told without the images
    pairs_note: str = ""
    patch: int = 0  # the model's patch size the estimate is for
    patches: int | None = None  # patches the actors would encode (each image once, the reference included)
    patches_note: str = ""


def _grouped(mf: Manifest, col: str) -> np.ndarray:
    order, _ = mf.grouping
    vals = (
        mf.table[col].cast(pa.float64()).to_numpy()
        if col in mf.table.column_names
        else np.full(mf.table.num_rows, np.nan)
    )
    return vals[order]


def _axis(size: np.ndarray, patch: int) -> np.ndarray:
    """Patches along one axis (:func:`pipeline.image.tiling.offsets`)."""
    return np.where(size <= patch, 1, np.ceil(size / patch))


def plan(mf: Manifest, *, patch: int, tolerance: float = 0.15) -> Plan:
    """Groups, images, pairs by strategy and patches of scoring ``mf`` with patches of ``patch`` px.

    Sizes come from ``width``/``height`` columns (a sweep manifest has them); without them the patches are
    unknown, and so are the ``adjacent`` and ``matched`` pairs of rows with ``bytes`` (bpp needs the size)."""
    from pipeline.scoring import pairing

    order, offsets = mf.grouping
    sizes = np.diff(offsets)
    out = Plan(patch=patch, groups=len(sizes), images=int(sizes.sum()), errors=len(mf.errors),
               pairs={"all": int((sizes * (sizes - 1) // 2).sum())})  # fmt: skip
    names = mf.table.column_names
    if "width" not in names or "height" not in names:
        out.patches_note = "unknown (no width/height columns)"
    width, height = _grouped(mf, "width"), _grouped(mf, "height")
    nbytes = _grouped(mf, "bytes")
    firsts = offsets[:-1]
    w0, h0 = width[firsts], height[firsts]
    sized = ~(np.isnan(w0) | np.isnan(h0))
    if sized.any():
        per_image = _axis(w0[sized], patch) * _axis(h0[sized], patch)
        out.patches = int(((1 + sizes[sized]) * per_image).sum())
        if not sized.all():
            out.patches_note = f"{int((~sized).sum())} group(s) without width/height not counted"
    with np.errstate(invalid="ignore", divide="ignore"):
        bpp = nbytes * 8.0 / (width * height)
    if (~np.isnan(nbytes) & np.isnan(bpp)).any():
        out.pairs.update(adjacent=None, matched=None)
        out.pairs_note = "adjacent and matched need each image's bpp: rows with bytes but no width/height"
        return out
    codec_codes = np.asarray(_codes(mf.table["codec"]), dtype=np.int64)[order]
    codec_names = _dictionary(mf.table["codec"]).dictionary.to_pylist()
    counts = {"adjacent": 0, "matched": 0}
    for g in range(len(sizes)):
        lo, hi = offsets[g], offsets[g + 1]
        items = [pairing.Item(codec=codec_names[c], bpp=None if b != b else float(b))
                 for c, b in zip(codec_codes[lo:hi].tolist(), bpp[lo:hi].tolist(), strict=True)]  # fmt: skip
        for strategy in counts:
            counts[strategy] += len(pairing.pairs(items, strategy, tolerance=tolerance))
    out.pairs.update(counts)
    return out


__all__ = ["INPUT_SCHEMA", "ManifestGroups", "Plan", "input_rows", "plan", "record_of"]
