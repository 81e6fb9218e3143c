"""Table schemas, declared once. Writers cast to these; readers and tests check against them.

Columns a table may carry beyond these (manifest extras, joined codec metadata) are appended after the declared
ones by :func:`conform`; the declared columns always keep their names, order and types.
"""

from __future__ import annotations

import pyarrow as pa

# The manifest: required columns must be present; optional ones are added as nulls when absent.
MANIFEST_REQUIRED = ("ref_id", "ref_uri", "dist_id", "dist_uri", "codec")
MANIFEST = pa.schema(
    [
        ("ref_id", pa.string()),
        ("ref_uri", pa.string()),
        ("dist_id", pa.string()),
        ("dist_uri", pa.string()),
        ("codec", pa.string()),
        ("codec_version", pa.string()),
        ("setting", pa.string()),
        ("bytes", pa.int64()),
    ]
)

# What `prfeval sweep` writes: the manifest plus how long the codec took.
# the per-image speed columns a sweep measures (wall and CPU, single-threaded), carried into `images`
TIMING_COLUMNS = (
    "encode_ms",
    "decode_ms",
    "encode_cpu_ms",
    "decode_cpu_ms",
    "encode_mp_per_s",
    "decode_mp_per_s",
)

SWEEP_MANIFEST = pa.schema(
    [
        *MANIFEST,
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bpp", pa.float64()),
        ("encode_ms", pa.float64()),
        ("decode_ms", pa.float64()),
        ("bitstream_uri", pa.string()),
        # speed: wall (above) and CPU time of the one encode and decode kept, single-threaded; megapixels per second
        ("encode_cpu_ms", pa.float64()),
        ("decode_cpu_ms", pa.float64()),
        ("encode_mp_per_s", pa.float64()),
        ("decode_mp_per_s", pa.float64()),
        # the knob value encoded (found per image for a bpp= target; the knob's name is in CODECS), the target,
        # and every encoder option (JSON)
        ("knob_value", pa.float64()),
        ("target_bpp", pa.float64()),
        ("codec_options", pa.string()),
    ]
)

# One row per codec and library version: what the knob is called and its range.
CODECS = pa.schema(
    [
        ("codec", pa.string()),
        ("codec_version", pa.string()),
        ("library", pa.string()),
        ("knob", pa.string()),
        ("knob_min", pa.float64()),
        ("knob_max", pa.float64()),
        ("higher_is_better_quality", pa.bool_()),
        ("description", pa.string()),
        (
            "options",
            pa.string(),
        ),  # the encoder options and their defaults, e.g. "subsampling=444|422|420 (default 420)"
    ]
)

IMAGES = pa.schema(
    [
        ("run_id", pa.string()),
        ("ref_id", pa.string()),
        ("dist_id", pa.string()),
        ("ref_uri", pa.string()),
        ("dist_uri", pa.string()),
        ("codec", pa.string()),
        ("codec_version", pa.string()),
        ("setting", pa.string()),
        ("bytes", pa.int64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("bpp", pa.float64()),
        ("psnr", pa.float64()),
        ("psnr_y", pa.float64()),
        ("ms_ssim", pa.float64()),
        ("prf_score", pa.float64()),
        ("prf_win_rate", pa.float64()),
        ("n_pairs", pa.int32()),
        ("conversions", pa.string()),  # what decoding did to the image ("; "-separated, empty when nothing)
        ("ref_conversions", pa.string()),  # what decoding did to its reference
    ]
)

METRIC_TYPE = pa.float64()  # every metric column of ``images``


def images_schema(metrics: list[str] | tuple[str, ...] = ()) -> pa.Schema:
    """:data:`IMAGES` plus a float64 column for each selected metric it does not declare (after the declared ones).

    The classic metrics (psnr, psnr_y, ms_ssim) are always declared, so a run with the default metrics has
    exactly :data:`IMAGES`; a run with ``--metrics ssimulacra2,...`` has a column per added metric, by name.
    """
    extra = [m for m in dict.fromkeys(metrics) if IMAGES.get_field_index(m) < 0]
    return pa.schema([*IMAGES, *((m, METRIC_TYPE) for m in extra)])


PAIRS = pa.schema(
    [
        ("run_id", pa.string()),
        ("ref_id", pa.string()),
        ("a_id", pa.string()),
        ("b_id", pa.string()),
        ("p_a", pa.float64()),
        ("logit", pa.float64()),
        ("model", pa.string()),
        ("checkpoint_sha256", pa.string()),
        ("n_patches", pa.int32()),
        ("a_codec", pa.string()),
        ("b_codec", pa.string()),
        ("a_setting", pa.string()),
        ("b_setting", pa.string()),
        ("a_bpp", pa.float64()),
        ("b_bpp", pa.float64()),
    ]
)

ERRORS = pa.schema(
    [
        ("run_id", pa.string()),
        ("stage", pa.string()),
        ("ref_id", pa.string()),
        ("dist_id", pa.string()),
        ("uri", pa.string()),
        ("error", pa.string()),
        ("message", pa.string()),
    ]
)


def conform(rows: list[dict] | pa.Table, schema: pa.Schema, *, keep_extras: bool = True) -> pa.Table:
    """Build a table with the declared columns in order and type (missing ones null), plus any extras."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows) if rows else None
    n = 0 if table is None else table.num_rows
    columns, fields = [], []
    for field in schema:
        if table is not None and field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type:
                col = col.cast(field.type) if not pa.types.is_null(col.type) else pa.nulls(n, field.type)
        else:
            col = pa.nulls(n, field.type)
        columns.append(col)
        fields.append(field)
    if keep_extras and table is not None:
        for f in table.schema:
            if schema.get_field_index(f.name) < 0:
                columns.append(table.column(f.name))
                fields.append(f)
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))
