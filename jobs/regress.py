"""`prfeval regress`: the nightly gate — did tonight's encoder build get worse than the last good one?

Inputs are two ``evaluate`` results folders (``images/`` and ``run.json``), or two manifests, or one of each.
Their images are matched on (ref_id, codec, setting); every matched pair becomes one 2AFC triplet (reference,
candidate output, baseline output), scored by PRFNet through the same Ray actor pool as ``evaluate``
(:func:`pipeline.scoring.driver.score_groups`), which also measures PSNR, MS-SSIM and bpp of both outputs again. The
statistics and the verdict are :mod:`pipeline.regress`.

Output (``--output``; by default inside the candidate, keyed by the baseline: ``<candidate>/regress/vs-<baseline
run id>`` for a results folder, ``<folder>/regress/<manifest name>-vs-<baseline>`` for a manifest — unique to the
comparison, so nightly runs never collide and rerunning one comparison resumes it):

- ``images/``, ``pairs/``, ``errors/`` — the triplet results, in the layout of ``evaluate`` (ids prefixed
  ``baseline:``/``candidate:``); idempotent and resumable: a rerun of the same comparison skips finished groups;
- ``regress.md`` — the summary for humans and CI comments; ``regress.json`` — the same for machines;
- ``run.json`` — the run (``kind: regress``, the verdict, both inputs).

Exit codes: 0 no regression, 1 regression, 2 error (bad input, nothing in common, or any failure: a crash is never
mistaken for a regression). With ``--registry`` (or ``$PRFEVAL_REGISTRY``) the run is appended to the runs
registry (:mod:`pipeline.runs.registry`), and ``--baseline last-good`` picks the candidate of the latest passing gate.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
import traceback
from dataclasses import dataclass, field

import pandas as pd

from jobs.common import ArgumentParser, UsageError, command
from jobs.scoring_options import add_scoring_options, scoring_config
from pipeline import regress
from pipeline.io import storage
from pipeline.runs import registry as runs
from pipeline.runs.ray_runtime import describe_failure, verbose
from pipeline.scoring import results
from pipeline.scoring.judge import judge_pairs

LAST_GOOD = "last-good"
MANIFEST_SUFFIXES = (".csv", ".parquet", ".pq")


def build_parser() -> ArgumentParser:
    th = regress.Thresholds()
    p = ArgumentParser(
        prog="prfeval regress",
        description="Compare a candidate run with a baseline run image by image: PRFNet 2AFC on (reference, "
        "baseline output, candidate output), rate and classic-metric changes per codec and setting, with "
        "bootstrap intervals over references. Exit 0: no regression; 1: regression (see regress.md); 2: error.",
        epilog="Registry: runs are recorded under --registry, or $PRFEVAL_REGISTRY when set; when neither is set "
        "nothing is recorded and --baseline last-good is unavailable.",
    )
    p.add_argument(
        "--baseline",
        required=True,
        help=f"baseline: evaluate results folder or manifest URI, or '{LAST_GOOD}' (from the registry)",
    )
    p.add_argument("--candidate", required=True, help="candidate: evaluate results folder or manifest URI")
    p.add_argument(
        "--output",
        help="where triplet results, regress.md and regress.json go "
        "(default: <candidate>/regress/vs-<baseline run id>, unique to the comparison)",
    )
    p.add_argument(
        "--alpha", type=float, default=th.alpha, help=f"intervals at level 1 - alpha (default: {th.alpha})"
    )
    p.add_argument(
        "--margin",
        type=float,
        default=th.margin,
        help=f"PRFNet regression when the P(candidate better) interval is below 0.5 - margin "
        f"(default: {th.margin})",
    )
    for flag, attr, what in (
        ("--rate-margin", "rate_margin", "relative bpp increase tolerated at equal quality"),
        ("--psnr-margin", "psnr_margin", "PSNR drop in dB tolerated"),
        ("--ms-ssim-margin", "ms_ssim_margin", "MS-SSIM drop tolerated"),
    ):
        p.add_argument(
            flag, type=float, default=getattr(th, attr), help=f"{what} (default: {getattr(th, attr)})"
        )
    p.add_argument(
        "--metric-margin",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="change of a metric tolerated before it is a regression, e.g. butteraugli=0.1 (repeatable; default: "
        "the metric's own margin, listed in regress.json's criteria); every metric of --metrics beyond PSNR, "
        "PSNR-Y and MS-SSIM is a criterion, judged in its direction (lower is better for Butteraugli, CIEDE2000)",
    )
    p.add_argument(
        "--gate",
        default=None,
        help=f"criteria that decide the verdict, comma-separated, from {', '.join(regress.CRITERIA)} or the "
        "name of a metric in --metrics (e.g. butteraugli); the others are reported as warnings "
        f"(default: all: {','.join(th.gate)} and each metric of --metrics beyond PSNR, PSNR-Y and MS-SSIM)",
    )
    p.add_argument(
        "--fail-on-missing",
        action="store_true",
        help="a baseline image missing from the candidate is a regression (default: reported only)",
    )
    p.add_argument(
        "--bootstrap", type=int, default=th.n_boot, help=f"bootstrap replicates (default: {th.n_boot})"
    )
    p.add_argument("--seed", type=int, default=th.seed, help="bootstrap seed (default: 0)")
    p.add_argument(
        "--judge",
        default="prfnet",
        help="who says which output of a triplet is closer to the reference for P(candidate better): prfnet "
        "(default) or a metric of --metrics, by its direction (1, 0 or 1/2 per triplet); `prfeval agreement` "
        "shows which judge agrees most with people on your content",
    )
    p.add_argument(
        "--allow-root",
        action="append",
        dest="allow_roots",
        metavar="PREFIX",
        help="a location images may be read from (repeatable; default: the locations each input run "
        "allowed, and the manifests' folders)",
    )
    p.add_argument(
        "--registry", help="runs registry root URI (default: $PRFEVAL_REGISTRY; none: not recorded)"
    )
    add_scoring_options(p, unit="reference")
    return p


# ---------------------------------------------------------------------------------------------- inputs


@dataclass
class Side:
    """One input of the comparison: a results folder or a manifest, its images and where they may be read."""

    name: str
    uri: str
    kind: str  # "results" | "manifest"
    images: pd.DataFrame
    run_id: str | None = None
    identity: str = ""  # what the fingerprint of the comparison uses: run id or manifest hash
    errors: int = 0
    roots: list[str] = field(default_factory=list)

    def describe(self) -> dict:
        return {
            "uri": storage.display(self.uri),
            "run_id": self.run_id,
            "kind": self.kind,
            "images": len(self.images),
            "errors": self.errors,
        }


def default_output(base: Side, cand: Side) -> str:
    """Where a comparison goes without ``--output``: inside the candidate, keyed by the baseline's run id (or its
    manifest's hash), so consecutive nights never share a folder and the same comparison resumes in its own."""
    key = base.run_id or base.identity.split(":")[-1][:16]
    key = re.sub(r"[^A-Za-z0-9._-]+", "_", key)
    if cand.kind == "results":
        return storage.join(cand.uri, "regress", f"vs-{key}")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", cand.uri.rstrip("/").rsplit("/", 1)[-1].rsplit(".", 1)[0])
    return storage.join(storage.parent(cand.uri), "regress", f"{name}-vs-{key}")


def _is_results(uri: str) -> bool:
    return storage.exists(storage.join(uri, "run.json")) or results.has_results(uri)


def load_side(name: str, uri: str) -> Side:
    """Read one input: an evaluate results folder, or a manifest (CSV/Parquet)."""
    from pipeline.scoring.manifest import ManifestError, read_manifest

    shown = storage.display(uri)
    try:
        if _is_results(uri):
            run = results.read_run(uri) or {}
            images = results.read_table(uri, "images")
            if images.empty:
                raise UsageError(f"{name} {shown}: the results folder has no images (images/*.parquet)")
            config = run.get("config") or {}
            roots = list(config.get("allow_roots") or [])
            if not roots and config.get("manifest"):
                roots = [storage.parent(config["manifest"])]
            run_id = run.get("run_id") or str(images["run_id"].dropna().iloc[0])
            return Side(
                name,
                uri,
                "results",
                images,
                run_id=run_id,
                identity=run_id,
                errors=results.count_rows(uri, "errors"),
                roots=roots,
            )
        if uri.lower().endswith(MANIFEST_SUFFIXES) and storage.exists(uri):
            mf = read_manifest(uri)
            return Side(
                name,
                uri,
                "manifest",
                mf.rows,
                identity="sha256:" + storage.sha256_of(uri),
                errors=len(mf.errors),
                roots=[storage.parent(uri)],
            )
    except ManifestError as e:
        raise UsageError(f"{name}: {e}") from None
    except OSError as e:
        raise UsageError(f"{name} {shown}: cannot read ({storage.redact(str(e))})") from None
    raise UsageError(
        f"{name} {shown}: neither an evaluate results folder (images/, run.json) nor a manifest (.csv/.parquet)"
    )


def resolve_baseline(uri: str, registry: str | None) -> str:
    """``last-good`` -> the candidate of the latest passing regress run in the registry."""
    if uri != LAST_GOOD:
        return uri
    root = runs.registry_root(registry)
    if not root:
        raise UsageError(f"--baseline {LAST_GOOD} needs a registry: --registry URI or ${runs.ENV_VAR}")
    found = runs.last_good_baseline(runs.read(root))
    if not found:
        raise UsageError(
            f"the registry {storage.display(root)} has no passing regress run to take a baseline from"
        )
    print(
        f"baseline: last good = {found['uri']} (run {found['run_id']}, passed in {found['regress_run_id']})"
    )
    return found["uri"]


def _same_content(a: str, b: str) -> bool:
    try:
        return storage.sha256_of(a) == storage.sha256_of(b)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------------- the run


def _metric_margins(values: list[str], args) -> tuple[tuple[str, float], ...]:
    """``--metric-margin NAME=VALUE`` options; PSNR's and MS-SSIM's set ``--psnr-margin``/``--ms-ssim-margin``."""
    out = {}
    for text in values:
        name, sep, value = text.partition("=")
        name = name.strip()
        try:
            margin = float(value) if sep else None
        except ValueError:
            margin = None
        if not name or margin is None:
            raise UsageError(f"--metric-margin {text!r}: expected NAME=VALUE, e.g. butteraugli=0.1")
        if name == "psnr":
            args.psnr_margin = margin
        elif name == "ms_ssim":
            args.ms_ssim_margin = margin
        else:
            out[name] = margin
    return tuple(out.items())


def _thresholds(args) -> regress.Thresholds:
    gate = tuple(g.strip() for g in (args.gate or "").split(",") if g.strip())
    if args.gate is None:
        gate = (
            regress.Thresholds().gate
        )  # and the metric criteria, once the metrics are known (_judged_metrics)
    margins = _metric_margins(args.metric_margin, args)
    try:
        return regress.Thresholds(
            alpha=args.alpha,
            margin=args.margin,
            rate_margin=args.rate_margin,
            psnr_margin=args.psnr_margin,
            ms_ssim_margin=args.ms_ssim_margin,
            metric_margins=margins,
            gate=gate,
            fail_on_missing=args.fail_on_missing,
            n_boot=args.bootstrap,
            seed=args.seed,
        )
    except (ValueError, KeyError) as e:  # KeyError: an unknown metric, with "did you mean"
        raise UsageError(str(e)) from None


def _judged_metrics(
    th: regress.Thresholds, selected: tuple[str, ...], default_gate: bool
) -> tuple[regress.Thresholds, tuple[str, ...]]:
    """The further metrics judged, and the thresholds gating them too when ``--gate`` was not given; a gated
    metric that --metrics does not measure is a usage error."""
    judged = regress.metric_criteria(selected, th.gate)
    if default_gate:
        th = dataclasses.replace(th, gate=(*th.gate, *judged))
    missing = [g for g in th.gate if g not in regress.CRITERIA and g not in judged]
    if missing:
        raise UsageError(
            f"--gate {','.join(missing)}: not measured in this run; add it to --metrics "
            f"(measured: {','.join(selected)})"
        )
    return th, judged


def run_regress(args, argv: list[str] | None) -> regress.Report:
    """Match, score (Ray), judge, write the outputs; returns the report."""
    from model import UnknownModelError
    from model.bundled import default_checkpoint
    from pipeline.scoring.driver import OutputConflict, ResourceError, run_groups
    from pipeline.scoring.manifest import ManifestError

    started = time.perf_counter()
    th = _thresholds(args)
    baseline_uri = resolve_baseline(args.baseline, args.registry)
    base, cand = load_side(regress.BASELINE, baseline_uri), load_side(regress.CANDIDATE, args.candidate)
    out = args.output or default_output(base, cand)
    try:
        matching = regress.match_runs(base.images, cand.images, same_reference=_same_content)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if matching.matched.empty:
        c = matching.counts()
        raise UsageError(
            f"the runs have no image in common on (ref_id, codec, setting): {c['only_baseline']} only in the "
            f"baseline, {c['only_candidate']} only in the candidate, {c['ref_mismatch']} reference(s) that differ"
        )
    if args.allow_roots:
        roots = list(args.allow_roots)
    else:
        missing = [s.name for s in (base, cand) if not s.roots]
        if missing:
            raise UsageError(
                f"the {' and '.join(missing)} run records no locations its images may be read "
                "from (no run.json); pass --allow-root"
            )
        roots = [*base.roots, *cand.roots]
    roots = list(dict.fromkeys([*roots, out]))
    ecfg = scoring_config(args, "regress", argv, output=out, pairs="all", allow_roots=roots)
    th, judged = _judged_metrics(th, tuple(ecfg.metrics), default_gate=args.gate is None)
    if args.judge != "prfnet" and args.judge not in ecfg.metrics:
        raise UsageError(
            f"--judge {args.judge}: not measured in this run; add it to --metrics (measured: "
            f"{','.join(ecfg.metrics)}), or use --judge prfnet"
        )
    args.gate = ",".join(th.gate)  # run.json's config records the criteria that decided
    trained = bool(args.checkpoint or default_checkpoint(args.model))
    identity = {
        "baseline": [storage.canonical(base.uri), base.identity],
        "candidate": [storage.canonical(cand.uri), cand.identity],
    }
    run_fields = {
        "config": {
            **{k: (storage.display(v) if isinstance(v, str) else v) for k, v in vars(args).items()},
            "output": storage.display(out),
            "allow_roots": [storage.display(r) for r in roots],
            "baseline": storage.display(baseline_uri),
        },
        "baseline": base.describe(),
        "candidate": cand.describe(),
        "verdict": None,
    }
    groups = regress.build_groups(matching)
    try:
        summary, run = run_groups(groups, ecfg, kind="regress", identity=identity, run_fields=run_fields,
                                  registry=args.registry, finish=False)  # fmt: skip
    except OutputConflict:
        raise UsageError(f"{storage.display(out)} holds another comparison; choose a new --output") from None
    except (ResourceError, UnknownModelError, ManifestError) as e:
        raise UsageError(str(e)) from None
    run_id = run.run_id
    images_t, pairs_t = results.read_table(out, "images"), results.read_table(out, "pairs")
    try:
        pairs_t = judge_pairs(images_t, pairs_t, args.judge)
    except ValueError as e:
        raise UsageError(str(e)) from None
    scored, unscored = regress.triplets(images_t, pairs_t, matching, metrics=judged)
    if scored.empty:
        raise UsageError(
            f"no matched image could be scored; see {storage.display(storage.join(out, 'errors'))}"
        )
    checkpoint_sha = run.record["checkpoint_sha256"]
    if checkpoint_sha is None and len(pairs_t):
        checkpoint_sha = str(pairs_t["checkpoint_sha256"].dropna().iloc[0])
    notes = _notes(args, trained, base, cand, scored, summary, judged)
    context = {
        "run_id": run_id,
        "output": storage.display(out),
        "baseline": base.describe(),
        "candidate": cand.describe(),
        "model": args.model,
        "checkpoint_sha256": checkpoint_sha,
        "trained_model": trained,
        "judge": args.judge,
    }
    report = regress.decide(scored, matching, unscored, th, context=context, notes=notes, metrics=judged)
    storage.write_text(storage.join(out, "regress.md"), report.to_markdown())
    storage.write_text(storage.join(out, "regress.json"), regress.to_json(report))
    run.finish(
        counts={
            **report.counts(),
            "groups": len(groups),
            "groups_failed_last": len(summary.failed_groups),
            "images": results.count_rows(out, "images"),
            "pairs": results.count_rows(out, "pairs"),
            "errors": results.count_rows(out, "errors"),
            "seconds_last": round(time.perf_counter() - started, 3),
        },
        fields={"checkpoint_sha256": checkpoint_sha, "verdict": report.verdict},
    )
    return report


def _notes(
    args, trained: bool, base: Side, cand: Side, scored: pd.DataFrame, summary, judged: tuple[str, ...] = ()
) -> list[str]:
    notes = []
    if args.judge != "prfnet":
        notes.append(
            f"P(candidate better) is judged by {args.judge}, not PRFNet: per triplet 1 when the candidate's "
            f"{args.judge} is better by its direction, 0 when worse, 1/2 when equal (the prfnet criterion reads it)."
        )
    if not trained and args.judge == "prfnet":
        notes.append(
            f"PRFNet `{args.model}` runs on untrained weights (no checkpoint): P(candidate better) is about 0.5 for "
            "every pair, so the prfnet criterion cannot detect a regression; PSNR, MS-SSIM and rate decide."
        )
    if scored["d_ms_ssim"].isna().all():
        notes.append(
            "MS-SSIM is not available (images too small for 5 scales): the ms_ssim criterion is not used."
        )
    for m in judged:
        if scored[f"d_{m}"].isna().all():
            notes.append(
                f"{m} has no value on these images (too small for it?): the {m} criterion is not used."
            )
    if scored["log_rate"].isna().all():
        notes.append("No rates (bytes) in the inputs: the rate and bd_rate criteria are not used.")
    for side in (base, cand):
        if side.errors:
            notes.append(f"the {side.name} input recorded {side.errors} error row(s) of its own.")
    if summary.failed_groups:
        notes.append(f"{len(summary.failed_groups)} reference group(s) failed to score; rerun to retry them.")
    return notes


@command
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = run_regress(args, argv)
    except UsageError:
        raise
    except (
        Exception
    ) as e:  # a crash must exit 2, never 1 (which means "regression"); the trace with --verbose
        if verbose():
            print(storage.redact(traceback.format_exc()), file=sys.stderr)
        raise UsageError(f"regress failed: {describe_failure(e)}") from None
    print(report.to_markdown(max_listed=10))
    out = report.context["output"]
    print(f"summary: {storage.join(out, 'regress.md')}  {storage.join(out, 'regress.json')}")
    return report.exit_code


__all__ = ["build_parser", "load_side", "main", "run_regress"]
