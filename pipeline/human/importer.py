"""Import a 2AFC study: regenerate the images the raters saw, check them, write triplets usable by every command.

Steps (:func:`import_study`):

1. Read the answers and the methods (:mod:`pipeline.human.study`); keep the originals and methods asked for.
2. Regenerate every (original, method) image with prfeval's own sweep (:func:`pipeline.sweep.run.run_sweep`, the
   methods' codec settings, bitstreams kept) into the output folder.
3. Check each method (:func:`pipeline.human.reproduce.check_methods`): per file by sha256 where the study (or a
   bit-exact regeneration, ``--reference-files``) gives them, else by mean bpp against the subset-corrected study
   mean. The correction is fitted on the methods that passed by sha256 over the same originals when at least
   :data:`MIN_FIT_METHODS` did (so a subset of the originals is corrected for that subset), else
   :data:`pipeline.human.reproduce.MUCPED23_SUBSET`. A refused method's answers are left out, counted, with the
   reason.
4. Write the outputs.

Output folder (all URIs relative to it, so the folder is portable)::

    manifest.parquet   the sweep's manifest rows of the kept methods, with a ``method`` column (carried into
                       ``images`` by evaluate): input of ``prfeval evaluate``
    codecs.parquet     the codec table of the sweep
    triplets.parquet   one row per original and unordered pair of kept methods: ref_id, ref_uri, a_uri, b_uri,
                       a_id, b_id, a_method, b_method, n_a, n_b, votes, label (= n_a / votes, the share of answers
                       for A), family, a_bpp, b_bpp: input of ``prfeval train`` and ``prfeval agreement``
    methods.parquet    one row per method: its codec spec and the verdict of the check (check, reason, figures)
    study.json         what was imported, which methods were checked by sha256 and which by mean bpp only, what
                       was left out and why
    refs/ images/ bitstreams/ parts/ errors/ run.json   the sweep's own outputs
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.codecs import parse_spec
from pipeline.human import reproduce as rp
from pipeline.human import study as st
from pipeline.io import jsonable, storage, tables
from pipeline.sweep.run import run_sweep

MIN_FIT_METHODS = 3
TRIPLET_COLUMNS = [
    "ref_id",
    "ref_uri",
    "a_uri",
    "b_uri",
    "a_id",
    "b_id",
    "a_method",
    "b_method",
    "n_a",
    "n_b",
    "votes",
    "label",
    "family",
    "a_bpp",
    "b_bpp",
]
FORMATS: dict[str, st.StudyFormat] = {"mucped23": st.MUCPED23}


@dataclass
class ImportSummary:
    """What an import did; ``document`` is what ``study.json`` holds."""

    output: str
    document: dict = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 when at least one pair of methods is usable, 1 when none is."""
        return 0 if self.document.get("counts", {}).get("triplets", 0) else 1


def _names(values: Sequence[str] | None) -> list[str] | None:
    if values is None:
        return None
    out = [v.strip() for item in values for v in str(item).split(",") if v.strip()]
    return out or None


def read_reference_files(uri: str) -> pd.DataFrame:
    """A per-file table of the study's (or a bit-exact regeneration's) files: ``method, original, bytes, sha256``.

    mucped23's ``reproduced_bytes.csv`` names its columns ``method, originalName, bytes, jpeg_sha256``.
    """
    df = tables.read_table(
        uri,
        error=st.StudyError,
        what="reference files table",
        column_types={
            c: pa.string() for c in ("method", "original", "originalName", "sha256", "jpeg_sha256")
        },
    ).to_pandas()
    df = df.rename(columns={"originalName": "original", "jpeg_sha256": "sha256"})
    tables.require_columns(
        df.columns, ("method", "original", "bytes"), error=st.StudyError,
        where=f"reference files table {storage.display(uri)}",
    )  # fmt: skip
    df["bytes"] = pd.to_numeric(df["bytes"], errors="coerce")
    return df[[c for c in ("method", "original", "bytes", "sha256") if c in df.columns]]


def fit_correction(verdicts: pd.DataFrame, study_bpp: dict[str, float]) -> rp.SubsetCorrection | None:
    """The subset ratio fitted on the methods that passed by sha256: ``mean / study = a + b · ln(study)``."""
    exact = verdicts[(verdicts["verdict"] == rp.OK) & (verdicts["check"] == "sha256")]
    if len(exact) < MIN_FIT_METHODS:
        return None
    x = np.log([study_bpp[m] for m in exact["method"]])
    y = exact["mean_bpp"].to_numpy(np.float64) / np.array([study_bpp[m] for m in exact["method"]])
    slope, intercept = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
    resid = y - (intercept + slope * x)
    note = (
        f"fitted on the {len(exact)} methods whose files all equal the reference files' sha256, over these "
        f"originals: ratio = {intercept:.4f} {slope:+.4f} ln(bpp), residual sd {100 * resid.std():.2f}%"
    )
    return rp.SubsetCorrection(float(intercept), float(slope), note)


def _sha256s(manifest: pd.DataFrame, output: str) -> list[str | None]:
    out = []
    for uri in manifest["bitstream_uri"]:
        if uri is None or (isinstance(uri, float) and math.isnan(uri)):
            out.append(None)
            continue
        out.append(hashlib.sha256(storage.read_bytes(storage.resolve(str(uri), output))).hexdigest())
    return out


def import_study(
    answers: str,
    methods: str,
    refs: str,
    output: str,
    *,
    study: st.StudyFormat = st.MUCPED23,
    reference_files: str | None = None,
    originals: Sequence[str] | None = None,
    only_methods: Sequence[str] | None = None,
    tolerance: float = rp.DEFAULT_TOLERANCE,
    executor: str = "ray",
    progress: bool = True,
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> ImportSummary:
    """Import the study into ``output`` (see the module docstring). Raises :class:`StudyError` for unusable input."""
    method_table = st.read_methods(methods)
    answer_table = st.read_answers(answers, methods=method_table, study=study)
    n_answers_read = len(answer_table)
    left_out: dict[str, dict] = {}

    wanted_methods = _names(only_methods)
    if wanted_methods is not None:
        unknown = sorted(set(wanted_methods) - set(method_table["method"]))
        if unknown:
            raise st.StudyError(f"--methods: unknown method(s) {', '.join(unknown[:5])}")
        keep = answer_table["method_a"].isin(wanted_methods) & answer_table["method_b"].isin(wanted_methods)
        left_out["not selected (--methods)"] = {"answers": int((~keep).sum())}
        answer_table = answer_table[keep]
        method_table = method_table[method_table["method"].isin(wanted_methods)].reset_index(drop=True)

    ref_files = {posixpath_stem(u): u for u in storage.listdir(refs) if not posixpath_stem(u).startswith(".")}
    wanted_originals = _names(originals)
    if wanted_originals is not None:
        unknown = sorted(set(wanted_originals) - set(answer_table["original"]))
        if unknown:
            raise st.StudyError(f"--originals: no answers about {', '.join(unknown[:5])}")
        keep = answer_table["original"].isin(wanted_originals)
        left_out["not selected (--originals)"] = {"answers": int((~keep).sum())}
        answer_table = answer_table[keep]
    no_file = ~answer_table["original"].isin(ref_files)
    if no_file.any():
        names = sorted(set(answer_table["original"][no_file]))
        left_out["original not found in --refs"] = {
            "answers": int(no_file.sum()),
            "originals": len(names),
            "examples": names[:5],
        }
        answer_table = answer_table[~no_file]
    if answer_table.empty:
        raise st.StudyError("no answers left to import (check --originals, --methods and --refs)")
    used = sorted(set(answer_table["method_a"]) | set(answer_table["method_b"]))
    method_table = method_table[method_table["method"].isin(used)].reset_index(drop=True)
    names = sorted(set(answer_table["original"]))

    # regenerate with the sweep
    refs_table = storage.join(output, "study", "refs.csv")
    storage.write_text(
        refs_table,
        pd.DataFrame({"ref_id": names, "ref_uri": [ref_files[n] for n in names]}).to_csv(index=False),
    )
    spec = " ".join(method_table["spec"])
    setting_of = {}
    for m, s in zip(method_table["method"], method_table["spec"], strict=True):
        (parsed,) = parse_spec(s)
        setting_of[(parsed.codec, parsed.text)] = m
    if log:
        log(f"regenerating {len(names)} original(s) x {len(method_table)} method(s) with the sweep")
    sweep = run_sweep(refs_table, spec, output, keep_bitstreams=True, executor=executor, progress=progress,
                      command=command, log=log)  # fmt: skip
    manifest = tables.read_table(sweep.manifest_uri, error=st.StudyError, what="sweep manifest").to_pandas()
    manifest["method"] = [
        setting_of.get((c, s)) for c, s in zip(manifest["codec"], manifest["setting"], strict=True)
    ]
    manifest = manifest[manifest["method"].notna() & manifest["ref_id"].isin(names)].reset_index(drop=True)
    manifest["sha256"] = _sha256s(manifest, output)
    regenerated = manifest.rename(columns={"ref_id": "original"})[
        ["method", "original", "bytes", "bpp", "sha256"]
    ]

    errors = tables.read_table(sweep.errors_uri, error=st.StudyError, what="sweep errors").to_pandas()
    reasons = {}
    failed = errors["dist_id"].astype(str) if len(errors) else pd.Series(dtype=str)
    for (codec, text), m in setting_of.items():
        mine = errors[failed.str.endswith(f"/{codec}/{text}")] if len(errors) else errors
        if len(mine):
            reasons[m] = f"not regenerated: {mine['error'].iloc[0]}: {mine['message'].iloc[0]}"

    study_bpp = dict(zip(method_table["method"], method_table["study_bpp"], strict=True))
    known = None
    if reference_files:
        known = read_reference_files(reference_files)
        known = known[known["original"].isin(names) & known["method"].isin(study_bpp)]
    by_bpp = [m for m in study_bpp if known is None or m not in set(known["method"])]
    others = sorted(set(ref_files) - set(names))
    check_originals = names
    if by_bpp and others:
        # a mean bpp is a property of the whole set of originals: regenerate the methods checked by mean bpp only
        # on the other originals too (into check/, not imported), so a selection of originals checks the same way
        check_originals = sorted(set(names) | set(others))
        extra = _check_sweep(
            output, others, ref_files, method_table, by_bpp, setting_of, executor, progress, log
        )
        regenerated = pd.concat([regenerated, extra], ignore_index=True)
    first = rp.check_methods(
        regenerated, study_bpp, reference_files=known, tolerance=tolerance, reasons=reasons
    )
    fitted = fit_correction(first, study_bpp) if check_originals == names else None
    correction = fitted or rp.MUCPED23_SUBSET
    verdicts = rp.check_methods(
        regenerated,
        study_bpp,
        reference_files=known,
        tolerance=tolerance,
        correction=correction,
        reasons=reasons,
    )

    pairs = st.aggregate(answer_table)
    kept_pairs, counts = rp.leave_out(pairs, verdicts)
    refused = verdicts[verdicts["verdict"] != rp.OK]
    if len(refused):
        left_out["method did not reproduce"] = {
            "answers": counts["answers"],
            "pairs": counts["pairs"],
            "methods": {r.method: r.reason for r in refused.itertuples()},
        }
    ok_methods = set(rp.kept(verdicts))
    kept_manifest = manifest[manifest["method"].isin(ok_methods)].reset_index(drop=True)
    triplets = _triplets(kept_pairs, kept_manifest, method_table)
    _write(output, kept_manifest, triplets, method_table, verdicts)

    by_check = {
        "sha256": sorted(
            verdicts.loc[(verdicts["verdict"] == rp.OK) & (verdicts["check"] == "sha256"), "method"]
        ),
        "bytes": sorted(
            verdicts.loc[(verdicts["verdict"] == rp.OK) & (verdicts["check"] == "bytes"), "method"]
        ),
        "mean bpp only": sorted(
            verdicts.loc[(verdicts["verdict"] == rp.OK) & (verdicts["check"] == "mean bpp"), "method"]
        ),
    }
    document = {
        "answers": storage.display(answers),
        "methods": storage.display(methods),
        "refs": storage.display(refs),
        "reference_files": reference_files and storage.display(reference_files),
        "format": next((k for k, v in FORMATS.items() if v == study), "custom"),
        "sweep_run_id": sweep.run_id,
        "tolerance": tolerance,
        "subset_correction": {
            "intercept": correction.intercept,
            "slope": correction.slope,
            "note": correction.note,
        },
        "checked_by": by_check,
        "refused": {r.method: r.reason for r in refused.itertuples()},
        "counts": {
            "answers_read": n_answers_read,
            "answers_imported": int(triplets["votes"].sum()) if len(triplets) else 0,
            "originals": int(triplets["ref_id"].nunique()) if len(triplets) else 0,
            "methods_checked": len(verdicts),
            "methods_kept": len(ok_methods),
            "methods_refused": len(refused),
            "images": len(kept_manifest),
            "triplets": len(triplets),
            "sweep_errors": sweep.n_errors,
        },
        "left_out": left_out,
        "outputs": {
            "manifest": "manifest.parquet",
            "triplets": "triplets.parquet",
            "methods": "methods.parquet",
        },
    }
    storage.write_text(storage.join(output, "study.json"), jsonable.dumps(document, indent=2) + "\n")
    return ImportSummary(output=output, document=document)


def _check_sweep(output, originals, ref_files, method_table, methods, setting_of, executor, progress, log):
    folder = storage.join(output, "check")
    table = storage.join(folder, "refs.csv")
    storage.write_text(
        table,
        pd.DataFrame({"ref_id": originals, "ref_uri": [ref_files[n] for n in originals]}).to_csv(index=False),
    )
    spec = " ".join(method_table.loc[method_table["method"].isin(methods), "spec"])
    if log:
        log(
            f"checking {len(methods)} method(s) by mean bpp: regenerating them on {len(originals)} other original(s)"
        )
    sweep = run_sweep(table, spec, folder, executor=executor, progress=progress)
    mf = tables.read_table(sweep.manifest_uri, error=st.StudyError, what="sweep manifest").to_pandas()
    mf["method"] = [setting_of.get((c, s)) for c, s in zip(mf["codec"], mf["setting"], strict=True)]
    mf = mf[mf["method"].notna()].rename(columns={"ref_id": "original"})
    return mf[["method", "original", "bytes", "bpp"]]


def posixpath_stem(uri: str) -> str:
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[0] if "." in name else name


def _triplets(pairs: pd.DataFrame, manifest: pd.DataFrame, methods: pd.DataFrame) -> pd.DataFrame:
    if pairs.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in TRIPLET_COLUMNS})
    img = manifest.set_index(["ref_id", "method"])
    family = dict(zip(methods["method"], methods["family"], strict=True))
    rows = []
    for r in pairs.itertuples(index=False):
        ka, kb = (r.original, r.a), (r.original, r.b)
        if ka not in img.index or kb not in img.index:
            continue  # an image of a kept method failed for this original: no triplet
        ia, ib = img.loc[ka], img.loc[kb]
        fa, fb = family[r.a], family[r.b]
        rows.append(
            {
                "ref_id": r.original,
                "ref_uri": ia["ref_uri"],
                "a_uri": ia["dist_uri"],
                "b_uri": ib["dist_uri"],
                "a_id": ia["dist_id"],
                "b_id": ib["dist_id"],
                "a_method": r.a,
                "b_method": r.b,
                "n_a": int(r.n_a),
                "n_b": int(r.n_b),
                "votes": int(r.n),
                "label": float(r.label),
                "family": fa if fa == fb else f"{min(fa, fb)} vs {max(fa, fb)}",
                "a_bpp": float(ia["bpp"]),
                "b_bpp": float(ib["bpp"]),
            }
        )
    return pd.DataFrame(rows, columns=TRIPLET_COLUMNS)


def _write(
    output: str, manifest: pd.DataFrame, triplets: pd.DataFrame, methods: pd.DataFrame, verdicts: pd.DataFrame
) -> None:
    mf = manifest.drop(columns=["sha256"]).assign(bitstream_sha256=manifest["sha256"])
    tables.write_parquet(
        storage.join(output, "manifest.parquet"), pa.Table.from_pandas(mf, preserve_index=False)
    )
    tables.write_parquet(
        storage.join(output, "triplets.parquet"), pa.Table.from_pandas(triplets, preserve_index=False)
    )
    table = methods.merge(verdicts, on="method", how="left")
    tables.write_parquet(
        storage.join(output, "methods.parquet"), pa.Table.from_pandas(table, preserve_index=False)
    )


__all__ = ["FORMATS", "MIN_FIT_METHODS", "TRIPLET_COLUMNS", "ImportSummary", "fit_correction", "import_study"]
