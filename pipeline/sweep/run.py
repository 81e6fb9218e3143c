"""Running a sweep: :func:`run_sweep` schedules :func:`pipeline.sweep.encode.sweep_reference` on Ray Data (or a
plain loop), then writes the tables and the run record.

Output layout (all paths in the manifest are relative to its folder, so the folder is portable)::

    manifest.parquet                         schemas.SWEEP_MANIFEST (+ source_uri)
    codecs.parquet                           schemas.CODECS: one row per codec and version
    errors/sweep.parquet                     schemas.ERRORS: this run's failures (empty when none)
    refs/<ref>.png                           the reference as encoded: 8-bit RGB after the odd-input policy
    images/<ref>/<codec>/<setting>.png       decoded images, lossless
    bitstreams/<ref>/<codec>/<setting>.<ext> with keep_bitstreams
    parts/<ref>.parquet                      per-reference rows: what a rerun reuses
    run.json                                 the run (:mod:`pipeline.runs.lifecycle`): id, inputs, counts

The manifest is rebuilt from the parts on every run, without duplicates. A rerun of the same sweep keeps its run
id; a sweep of other references or settings into the same folder is a new run that reuses what still fits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pyarrow as pa

from pipeline.codecs import Setting, get_codec, parse_spec
from pipeline.image import decoding, samples
from pipeline.io import schemas, storage, tables
from pipeline.runs.lifecycle import Run
from pipeline.sweep.encode import Layout, ReferenceResult, SweepConfig, sweep_reference
from pipeline.sweep.references import Reference, SweepInputError, find_references


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
    tables.write_parquet(uri, schemas.conform(rows, schema))


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


def _open_run(refs: str, settings: list[Setting], output: str, config: dict, command: str) -> Run:
    """The sweep's run record: the same references and settings resume the run id; others start a new run."""
    identity = {
        "refs": refs if samples.is_samples_uri(refs) else storage.canonical(refs),
        "settings": [f"{s.codec}:{s.text}" for s in settings],
        **{k: config[k] for k in ("keep_bitstreams", "max_pixels", "limit")},
    }
    return Run.open(output, kind="sweep", identity=identity, config={"refs": refs, **config}, command=command,
                    on_other="replace")  # fmt: skip


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
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> SweepSummary:
    """Sweep ``refs`` with the codec ``spec`` into ``output``; see the module docstring for the layout.

    Raises :class:`pipeline.codecs.SpecError` for a bad spec and :class:`SweepInputError` when no reference is
    found or the output cannot be written. Failures of single references or settings go to the errors table.
    ``run_id`` names the run instead of the lifecycle's id; ``log`` receives one line saying what is about to run.
    """
    t0 = time.perf_counter()
    settings = parse_spec(spec)
    references, ignored = find_references(refs, limit=limit)
    layout = Layout(output)
    try:  # fail early, before any work, when the output cannot be written; replaced at the end
        _write_table(layout.errors, [], schemas.ERRORS)
    except Exception as e:
        raise SweepInputError(
            f"cannot write to {storage.display(output)}: {storage.redact(str(e))}"
        ) from None
    options = {
        "keep_bitstreams": keep_bitstreams,
        "max_pixels": max_pixels,
        "limit": limit,
        "executor": executor,
    }
    run = _open_run(refs, settings, output, options, command)
    if run_id:
        run.update(run_id=run_id)
        run.write()
    config = SweepConfig(output, tuple(settings), keep_bitstreams, max_pixels, run.run_id)

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
    tables.write_parquet(layout.codecs, codecs_table(rows, settings))
    _write_table(layout.errors, errors, schemas.ERRORS)

    new = {i for r in results for i in r.new_ids}
    counts: dict[str, int] = {}
    cpu_ms: dict[str, float] = {}
    for row in rows:
        if row["dist_id"] in new:
            counts[row["codec"]] = counts.get(row["codec"], 0) + 1
            cpu_ms[row["codec"]] = cpu_ms.get(row["codec"], 0.0) + row["encode_ms"]
    summary = SweepSummary(
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
    run.finish(
        counts={
            "references": summary.n_refs,
            "references_failed": summary.n_refs_failed,
            "rows": summary.n_rows,
            "encoded": summary.n_encoded,
            "reused": summary.n_reused,
            "errors": summary.n_errors,
            "seconds_last": round(summary.seconds, 3),
        }
    )
    return summary
