"""`prfeval clic`: the CLIC perceptual track. Triplet CSV in, 0/1 submission CSV out, accuracy against an oracle.

Scoring goes through the evaluate pipeline (:func:`pipeline.scoring.driver.score_groups`): one group per original, every
image decoded and encoded once however many rows name it, each unordered pair compared once. The work folder
(``--work``, default ``<output stem>-work`` beside the output) is an ordinary results folder (``images/``,
``pairs/``, ``errors/``, ``run.json``), so an interrupted run resumes where it stopped.

Every CSV row gets a 0/1 in the submission, as CLIC requires. A row whose images could not all be read has no
score: it is written with ``T = 0`` (A closer, the tie rule), listed in the ``errors`` table (unit ``clic-rows``) and on
stderr, and the command exits 1.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pandas as pd

from jobs.common import EXIT_OK, EXIT_ROW_ERRORS, ArgumentParser, UsageError, command
from jobs.scoring_options import add_scoring_options, scoring_config, scoring_errors
from pipeline import clic
from pipeline.io import storage


def build_parser() -> ArgumentParser:
    p = ArgumentParser(
        prog="prfeval clic",
        description="CLIC perceptual-track mode: score every triplet of a CLIC CSV (OriginalFile,FileA,FileB) "
        "with PRFNet and write the 4-column submission (T = 0 when A is closer) in the same row order; with "
        "--oracle, print the accuracy as CLIC counts it (matches / rows).",
    )
    p.add_argument("--csv", required=True, help="CLIC triplet CSV (no header: OriginalFile,FileA,FileB[,T])")
    p.add_argument("--images", required=True, help="folder holding the files the CSV names")
    p.add_argument("--originals", help="folder of the original images (default: --images)")
    p.add_argument("--output", required=True, help="submission CSV to write (local path or s3://...)")
    p.add_argument("--oracle", help="CLIC oracle CSV (OriginalFile,FileA,FileB,T): print the accuracy")
    p.add_argument("--work", help="work folder for the scored pairs (default: <output stem>-work beside it)")
    add_scoring_options(p, unit="original")
    return p


def default_work(output: str) -> str:
    stem = os.path.splitext(os.path.basename(output.rstrip("/")))[0] or "clic"
    return storage.join(storage.parent(output), f"{stem}-work")


def _unscored_rows(triplets: pd.DataFrame, p: np.ndarray, errors: pd.DataFrame, run_id: str) -> list[dict]:
    """An errors-table row per CSV row without a score, with the reason its images gave."""
    reasons: dict[tuple[str, str], str] = {}
    for r in errors.itertuples(index=False):
        if r.ref_id is not None and r.stage != "clic":  # not the rows an earlier run could not score
            reasons.setdefault((r.ref_id, r.dist_id or ""), f"{r.error}: {r.message}")
    rows = []
    lines = triplets.attrs.get("lines") or list(range(1, len(triplets) + 1))
    for i in np.flatnonzero(np.isnan(p)):
        o, a, b = triplets.iloc[i][list(clic.COLUMNS)]
        why = [reasons[k] for k in ((o, a), (o, b)) if k in reasons]
        why = why or [v for (ref, _), v in reasons.items() if ref == o][:1] or ["not scored"]
        rows.append(
            {
                "run_id": run_id,
                "stage": "clic",
                "ref_id": o,
                "dist_id": None,
                "uri": None,
                "error": "unscored_row",
                "message": f"CSV line {lines[i]} ({o},{a},{b}): written as T=0 without a score; {why[0]}",
            }
        )
    return rows


@command
def main(argv: list[str] | None = None) -> int:
    from pipeline.scoring import results
    from pipeline.scoring.driver import run_groups

    started = time.perf_counter()
    args = build_parser().parse_args(argv)
    try:
        triplets = clic.read_csv(args.csv)
        oracle = clic.read_csv(args.oracle, labelled=True) if args.oracle else None
    except clic.ClicFormatError as e:
        raise UsageError(str(e)) from None
    work = args.work or default_work(args.output)
    originals = args.originals or args.images
    cfg = scoring_config(
        args, "clic", argv, output=work, pairs="all", allow_roots=[args.images, originals, work]
    )
    groups = clic.build_groups(triplets, args.images, originals)
    n_images = sum(len(g["dists"]) for g in groups)
    n_pairs = sum(len(g["pairs"]) for g in groups)
    print(
        f"{len(triplets)} rows: {len(groups)} originals, {n_images} distinct images, {n_pairs} distinct pairs"
    )
    identity = {
        "csv": storage.canonical(args.csv),
        "images": storage.canonical(args.images),
        "originals": storage.canonical(originals),
    }
    with scoring_errors():
        summary, run = run_groups(groups, cfg, kind="clic", identity=identity, finish=False,
                                  inputs={"csv": args.csv, "images": args.images, "originals": originals})  # fmt: skip
    print(
        f"{summary.groups_done} original(s) scored now, {summary.groups_skipped} already scored in "
        f"{storage.display(work)}"
    )

    pairs = results.read_table(work, "pairs")
    p = clic.row_probabilities(triplets, pairs)
    t = clic.decide(p)
    storage.write_text(args.output, clic.submission_text(triplets, t))
    predictions = triplets[list(clic.COLUMNS)].assign(p_a=p, t=t)
    storage.write_text(storage.join(work, "predictions.csv"), predictions.to_csv(index=False))
    unscored = _unscored_rows(triplets, p, results.read_table(work, "errors"), run.run_id)
    # exactly these unscored rows (none: an earlier run's unscored rows are all scored now), published at once
    results.replace_errors(work, "clic-rows", unscored, run.run_id)
    print(
        f"submission: {storage.display(args.output)}  ({len(triplets)} rows, {int((t == 0).sum())} with T=0)"
    )

    score = None
    if oracle is not None:
        submission = triplets[list(clic.COLUMNS)].assign(t=t)
        try:
            score = clic.accuracy(submission, oracle)
        except clic.ClicFormatError as e:
            raise UsageError(f"--oracle: {e}") from None
        print(clic.format_score(score))
        storage.write_text(
            storage.join(work, "accuracy.json"), json.dumps(score.to_dict(), indent=2, default=float)
        )
    sha = run.record["checkpoint_sha256"] or (
        str(pairs["checkpoint_sha256"].dropna().iloc[0]) if len(pairs) else None
    )
    print(f"model {args.model}, checkpoint sha256 {sha}; scores in {storage.display(work)}")
    clic_facts = {
        "rows": len(triplets),
        "originals": len(groups),
        "images": n_images,
        "pairs": n_pairs,
        "unscored_rows": len(unscored),
        "submission": storage.display(args.output),
        "accuracy": None
        if score is None
        else {
            "accuracy": score.accuracy,
            "rows": score.rows,
            "accuracy_distinct": score.accuracy_distinct,
        },
        "seconds_last": round(time.perf_counter() - started, 3),
    }
    run.finish(fields={"checkpoint_sha256": sha, "clic": clic_facts})
    if unscored:
        for row in unscored[:10]:
            print(f"prfeval clic: {row['message']}", file=sys.stderr)
        more = f" ({len(unscored) - 10} more)" if len(unscored) > 10 else ""
        print(
            f"{len(unscored)} row(s) without a score{more}: see {storage.display(storage.join(work, 'errors'))}",
            file=sys.stderr,
        )
        return EXIT_ROW_ERRORS
    return EXIT_OK
