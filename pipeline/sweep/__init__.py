"""Codec sweeps: find the references (:mod:`~pipeline.sweep.references`), encode every reference with each codec
at each setting and decode it, in tasks that write to the output themselves (:mod:`~pipeline.sweep.encode`), then
schedule that work on Ray Data or a plain loop and write what `evaluate` needs — the manifest, the codec table, the
errors table and the run record (:mod:`~pipeline.sweep.run`, whose docstring shows the output layout).
"""

from pipeline.sweep.encode import (
    STAGE,
    Layout,
    ReferenceResult,
    SweepConfig,
    dist_id,
    sweep_reference,
)
from pipeline.sweep.references import (
    TABLE_SUFFIXES,
    Reference,
    SweepInputError,
    find_references,
    image_suffixes,
    load_reference,
)
from pipeline.sweep.run import EXECUTORS, SweepSummary, codecs_table, run_sweep

__all__ = [
    "EXECUTORS",
    "STAGE",
    "TABLE_SUFFIXES",
    "Layout",
    "Reference",
    "ReferenceResult",
    "SweepConfig",
    "SweepInputError",
    "SweepSummary",
    "codecs_table",
    "dist_id",
    "find_references",
    "image_suffixes",
    "load_reference",
    "run_sweep",
    "sweep_reference",
]
