"""`prfeval agreement`: how often each judge agrees with people's 2AFC answers.

Input: ``--triplets URI``, a table with one row per original and unordered pair of distorted images and the human
votes, ``ref_uri, a_uri, b_uri`` and either ``n_a, n_b`` (answers for A and for B) or ``label`` with ``votes``
(the training format: ``n_a = label · votes``). Relative URIs resolve against the table's folder. One or more
``--results URI``: results folders of `evaluate` (or `clic`) that scored these images. Each image of a triplet is
found in a results folder's ``images`` table by its URI (``dist_uri``).

Judges, per results folder: PRFNet (``p_a`` of the folder's ``pairs`` table; named by model and checkpoint), every
registered metric present as an ``images`` column (its direction from the metric's ``higher_is_better``), and file
size (the larger file is judged closer; bytes, else bpp). The figures and their decisions are those of
:mod:`pipeline.human.agreement`: share of answers agreed with (ties count half) and the majority-vote ceiling with
95 % intervals from the bootstrap over originals, split by same- vs cross-encoder pairs (the images' codec) and by
bpp range; per method (codec and setting), Spearman and Kendall of each judge's Bradley–Terry scores against the
human ones; with ``--anchor`` and ``--test`` (two codecs), the BD-rate of test against anchor on each axis.

The triplets may also be a labelled CLIC CSV (``OriginalFile,FileA,FileB,T``) with ``--images`` (the folder of its
files); rows naming the same original and images become one pair with their vote counts.

Scoring only the pairs people compared: ``--score WORK`` scores the triplets' pairs on the `evaluate` actor pool
(explicit pairs per reference, resumable, the shared scoring options) into the results folder ``WORK``, which is
then read as one more ``--results``. With ``--manifest`` (e.g. a study import's ``manifest.parquet``) each image
keeps its manifest row (codec, setting, bytes, ``method``); without, images are named by URI and their codec is
unknown (then there are no method-level figures, as for CLIC).

Methods: the images' ``method`` column when present (a study import), else codec and setting.

Output (``--output URI``, a folder): ``agreement.parquet``, ``rank_correlation.parquet``, ``method_scores.parquet``,
``bd_rate.parquet`` (when asked), ``agreement.json`` (everything, with the counts of triplets left out and why),
``agreement.md``, and ``agreement.html``, one self-contained page with the figures (PNG inline; PNG and SVG in
``plots/``). Exit codes: 0, 1 when scoring (``--score``) recorded errors, 2 for unusable input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from jobs.common import EXIT_OK, EXIT_ROW_ERRORS, ArgumentParser, UsageError, command
from jobs.scoring_options import add_scoring_options, scoring_config, scoring_errors
from pipeline.human import agreement as ag
from pipeline.human import groups as vote_groups
from pipeline.human import page
from pipeline.image import metrics as metric_registry
from pipeline.io import jsonable, markdown, storage, tables
from pipeline.scoring import results as results_mod

FILE_SIZE = "file size"


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="prfeval agreement", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--triplets", required=True, help="triplet table with human votes (n_a, n_b or label+votes)"
    )
    p.add_argument("--results", action="append", default=[], help="results folder (repeat for several)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--images", help="folder of a CLIC CSV's files (when --triplets is a CLIC CSV)")
    p.add_argument("--score", metavar="WORK", help="score the triplets' pairs into this results folder first")
    p.add_argument(
        "--manifest", help="with --score: the manifest listing the triplets' images (codec, method...)"
    )
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap replicates over originals (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--anchor", help="anchor codec of the BD-rate")
    p.add_argument("--test", help="test codec of the BD-rate")
    add_scoring_options(p)
    return p


def _is_table(uri: str) -> bool:
    if tables.is_parquet(uri):
        return True
    head = tables.read_input(uri, error=UsageError)[:4096].decode("utf-8-sig", errors="replace")
    return "ref_uri" in [c.strip().strip('"') for c in head.split("\n", 1)[0].split(",")]


def read_votes(uri: str, images: str | None = None) -> pd.DataFrame:
    """The triplet table as ``ref_uri, a_uri, b_uri, original, a, b, n_a, n_b`` (URIs resolved against its folder;
    ``original`` is ``ref_id`` when given, else the reference URI; ``a``/``b`` are the image URIs)."""
    shown = storage.display(uri)
    if not _is_table(uri):
        from pipeline.training import triplets as training

        try:
            df = training.read_triplets(uri, images=images)
        except training.TripletError as e:
            raise UsageError(str(e)) from None
        df = df.assign(
            n_a=(df["label"] * df["votes"]).round(), n_b=df["votes"] - (df["label"] * df["votes"]).round()
        )
    else:
        df = tables.read_table(uri, error=UsageError, what="triplet table").to_pandas()
    missing = [c for c in ("ref_uri", "a_uri", "b_uri") if c not in df.columns]
    if not {"n_a", "n_b"} <= set(df.columns) and not {"label", "votes"} <= set(df.columns):
        missing.append("n_a and n_b (or label and votes)")
    if missing:
        raise UsageError(f"{shown}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise UsageError(f"{shown}: no rows")
    if {"n_a", "n_b"} <= set(df.columns):
        n_a, n_b = pd.to_numeric(df["n_a"], errors="coerce"), pd.to_numeric(df["n_b"], errors="coerce")
    else:
        votes = pd.to_numeric(df["votes"], errors="coerce")
        n_a = (pd.to_numeric(df["label"], errors="coerce") * votes).round()
        n_b = votes - n_a
    bad = n_a.isna() | n_b.isna() | (n_a < 0) | (n_b < 0)
    if bad.any():
        raise UsageError(f"{shown}: vote counts must be numbers >= 0 (row {int(np.flatnonzero(bad)[0]) + 2})")
    base = images if images and not _is_table(uri) else storage.parent(uri)
    out = pd.DataFrame(
        {
            c: [storage.canonical(storage.resolve(str(v), base)) for v in df[c]]
            for c in ("ref_uri", "a_uri", "b_uri")
        }
    )
    out["original"] = df["ref_id"].astype(str) if "ref_id" in df.columns else out["ref_uri"]
    out["a"], out["b"] = out["a_uri"], out["b_uri"]
    out["n_a"], out["n_b"] = n_a.astype(np.int64), n_b.astype(np.int64)
    return out[out["n_a"] + out["n_b"] > 0].reset_index(drop=True)


def _lookup(images: pd.DataFrame, uris: pd.Series, column: str) -> np.ndarray:
    values = images.set_index("key")[column]
    return values.reindex(uris).to_numpy()


def judges_of(
    results: str, votes: pd.DataFrame, label: str
) -> tuple[dict[str, np.ndarray], pd.DataFrame, dict]:
    """The judges of one results folder, its images as seen by the triplets, and what could not be matched."""
    images = results_mod.read_table(results, "images")
    pairs = results_mod.read_table(results, "pairs")
    images = images.assign(key=[storage.canonical(u) for u in images["dist_uri"].astype(str)])
    images = images.drop_duplicates("key", keep="first")
    found = votes["a_uri"].isin(images["key"]) & votes["b_uri"].isin(images["key"])
    judges: dict[str, np.ndarray] = {}
    side = {s: votes[f"{s}_uri"] for s in ("a", "b")}
    ids = {s: _lookup(images, side[s], "dist_id") for s in side}
    if not pairs.empty:
        p = {}
        for a, b, pa_ in zip(pairs["a_id"], pairs["b_id"], pairs["p_a"], strict=True):  # dist ids are unique
            p[(a, b)] = pa_
            p[(b, a)] = 1.0 - pa_
        models = sorted(set(pairs["model"].dropna().astype(str)))
        sha = sorted(set(pairs["checkpoint_sha256"].dropna().astype(str)))
        name = f"prfnet {'/'.join(models)} {sha[0][:8] if len(sha) == 1 else ''}".strip()
        judges[f"{name} ({label})" if label else name] = np.array(
            [p.get((a, b), np.nan) for a, b in zip(ids["a"], ids["b"], strict=True)], dtype=np.float64
        )
    for info in metric_registry.available_metrics():
        if info.name in images.columns and images[info.name].notna().any():
            sa = pd.to_numeric(pd.Series(_lookup(images, side["a"], info.name)), errors="coerce")
            sb = pd.to_numeric(pd.Series(_lookup(images, side["b"], info.name)), errors="coerce")
            name = f"{info.name} ({label})" if label else info.name
            judges[name] = ag.preference_from_scores(sa, sb, higher_is_better=info.higher_is_better)
    size = "bytes" if images["bytes"].notna().any() else "bpp"
    sa = pd.to_numeric(pd.Series(_lookup(images, side["a"], size)), errors="coerce")
    sb = pd.to_numeric(pd.Series(_lookup(images, side["b"], size)), errors="coerce")
    judges[f"{FILE_SIZE} ({label})" if label else FILE_SIZE] = ag.preference_from_scores(sa, sb)
    seen = pd.DataFrame(
        {
            f"{s}_{c}": _lookup(images, side[s], c)
            for s in ("a", "b")
            for c in ("codec", "setting", "bpp", "method")
            if c in images.columns
        }
    )
    return judges, seen, {"triplets_without_images": int((~found).sum())}


def _markdown(table: pd.DataFrame, ranks: pd.DataFrame, bd: pd.DataFrame | None, left_out: dict) -> str:
    lines = ["# Agreement with people", ""]
    lines += [f"Left out: {jsonable.dumps(left_out)}", ""]
    rows = [
        [
            markdown.cell(r.judge),
            markdown.cell(r.group),
            markdown.fmt_ci(r.agreement, r.ci_low, r.ci_high, ".3f"),
            str(r.n_answers),
            str(r.n_missing),
        ]
        for r in table.itertuples()
    ]
    lines += markdown.table(
        ["judge", "pairs", "agreement (95% CI)", "answers", "rows without a preference"], rows
    )
    lines += ["", "## Methods: Bradley–Terry rank correlation with people", ""]
    rows = [
        [
            markdown.cell(r.judge),
            markdown.fmt_ci(r.spearman, r.spearman_low, r.spearman_high, ".3f"),
            markdown.fmt_ci(r.kendall, r.kendall_low, r.kendall_high, ".3f"),
            str(r.n_methods),
        ]
        for r in ranks.itertuples()
    ]
    lines += markdown.table(["judge", "Spearman (95% CI)", "Kendall (95% CI)", "methods"], rows)
    if bd is not None:
        lines += ["", "## BD-rate", ""]
        rows = [
            [
                markdown.cell(r.judge),
                markdown.cell(f"{r.test} vs {r.anchor}"),
                markdown.fmt_ci(r.bd_rate, r.ci_low, r.ci_high, "+.1f", "%"),
                markdown.cell(r.reason),
            ]
            for r in bd.itertuples()
        ]
        lines += markdown.table(["axis", "curves", "BD-rate (95% CI)", "reason"], rows)
    return "\n".join(lines) + "\n"


def score(args, argv, votes: pd.DataFrame) -> tuple[int, dict]:
    """Score the triplets' pairs into ``args.score`` (explicit pairs, the evaluate actor pool)."""
    from pipeline.scoring import manifest as manifest_mod
    from pipeline.scoring.driver import run_groups

    try:
        mf = manifest_mod.read_manifest(args.manifest) if args.manifest else None
    except manifest_mod.ManifestError as e:
        raise UsageError(str(e)) from None
    groups, missing = vote_groups.vote_groups(votes, None if mf is None else manifest_mod.groups(mf))
    if not groups:
        raise UsageError("--score: no triplet's images are in the manifest (compare the URIs with dist_uri)")
    roots = [storage.parent(args.triplets), args.score, *([args.images] if args.images else [])]
    roots += [storage.parent(args.manifest)] if args.manifest else []
    cfg = scoring_config(args, "agreement", argv, output=args.score, pairs="all", allow_roots=roots)
    identity = {
        "triplets": storage.canonical(args.triplets),
        "manifest": args.manifest and storage.canonical(args.manifest),
        "pairs": "triplets",
    }
    codec_table = None
    if args.manifest and storage.exists(storage.join(storage.parent(args.manifest), "codecs.parquet")):
        codec_table = manifest_mod.read_codec_table(
            storage.join(storage.parent(args.manifest), "codecs.parquet")
        )
    with scoring_errors():
        summary, _ = run_groups([g.to_dict() for g in groups], cfg, kind="agreement", identity=identity,
                                inputs={"triplets": args.triplets, "manifest": args.manifest},
                                codec_table=codec_table)  # fmt: skip
    n_pairs = sum(len(g.pairs or []) for g in groups)
    print(f"scored {n_pairs} pair(s) of {len(groups)} reference(s) into {storage.display(args.score)}")
    return summary.errors, {"triplets_not_in_manifest": missing} if args.manifest else {}


def _methods(seen: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """The method of each triplet's A and B: the images' method column, else codec:setting; None when unknown."""
    if {"a_method", "b_method"} <= set(seen.columns) and seen["a_method"].notna().any():
        return seen["a_method"], seen["b_method"]
    if {"a_codec", "a_setting", "b_codec", "b_setting"} <= set(seen.columns):
        known = seen["a_setting"].notna() & seen["b_setting"].notna()
        if known.any():
            ma = (seen["a_codec"].astype(str) + ":" + seen["a_setting"].astype(str)).where(known)
            mb = (seen["b_codec"].astype(str) + ":" + seen["b_setting"].astype(str)).where(known)
            return ma, mb
    return None


def _bd(args, method: pd.DataFrame, method_judges: dict, seen: pd.DataFrame, ok: np.ndarray):
    if not (args.anchor or args.test):
        return None
    if not (args.anchor and args.test):
        raise UsageError("--anchor and --test go together")
    codec_a = seen["a_codec"].astype(str)[ok].to_numpy()
    codec_b = seen["b_codec"].astype(str)[ok].to_numpy()
    codec_of = dict(zip(method["a"], codec_a, strict=True)) | dict(zip(method["b"], codec_b, strict=True))
    curves = {c: [m for m in dict.fromkeys(codec_of) if codec_of[m] == c] for c in (args.anchor, args.test)}
    bpps = pd.concat(
        [
            pd.DataFrame({"m": method["a"], "bpp": seen["a_bpp"][ok].to_numpy()}),
            pd.DataFrame({"m": method["b"], "bpp": seen["b_bpp"][ok].to_numpy()}),
        ]
    )
    bpp = bpps.groupby("m")["bpp"].mean().to_dict()
    try:
        return ag.bd_rate_table(method, method_judges, bpp, curves, anchor=args.anchor, test=args.test,
                                n_boot=args.n_boot, seed=args.seed)  # fmt: skip
    except ValueError as e:
        raise UsageError(f"BD-rate: {e}") from None


def _write_table(uri: str, df: pd.DataFrame) -> None:
    tables.write_parquet(uri, pa.Table.from_pandas(df, preserve_index=False))


def run(args, argv: list[str] | None = None) -> dict:
    votes = read_votes(args.triplets, args.images)
    results_list = list(args.results)
    left_out: dict[str, int] = {}
    scoring_errors = 0
    if args.score:
        scoring_errors, counts = score(args, argv, votes)
        left_out |= counts
        results_list.append(args.score)
    elif args.manifest:
        raise UsageError("--manifest goes with --score")
    if not results_list:
        raise UsageError("give --results (a scored results folder) or --score WORK")
    judges: dict[str, np.ndarray] = {}
    seen = None
    for results in results_list:
        label = storage.display(results) if len(results_list) > 1 else ""
        found, s, counts = judges_of(results, votes, label)
        judges |= found
        seen = s if seen is None else seen.combine_first(s)
        left_out[f"triplets_without_images ({storage.display(results)})"] = counts["triplets_without_images"]
    if all(v == len(votes) for k, v in left_out.items() if k.startswith("triplets_without_images")):
        raise UsageError(
            "no triplet's images were found in the results (compare the triplets' URIs with dist_uri)"
        )
    groups = {}
    if {"a_codec", "b_codec"} <= set(seen.columns):
        known = (seen["a_codec"].notna() & seen["b_codec"].notna()).to_numpy()
        groups["pairing"] = np.where(known, ag.encoder_pairing(seen["a_codec"], seen["b_codec"]), None)
    if {"a_bpp", "b_bpp"} <= set(seen.columns):
        groups["bpp"] = ag.bpp_range(seen["a_bpp"].astype(float), seen["b_bpp"].astype(float))
    table = ag.agreement_table(votes, judges, groups=groups, n_boot=args.n_boot, seed=args.seed)
    # method level: triplets whose images were not found, or whose methods are unknown, are left out
    methods = _methods(seen)
    ranks = pd.DataFrame(columns=ag.RANK_COLUMNS)
    scores = pd.DataFrame(columns=["method", "people"])
    bd = None
    rank_note = ""
    if methods is None:
        rank_note = "no method-level figures: the images have no method, codec setting or known codec"
    else:
        ma, mb = methods
        ok = (ma.notna() & mb.notna() & (ma != mb)).to_numpy()
        method = pd.DataFrame(
            {"original": votes["original"], "a": ma, "b": mb, "n_a": votes["n_a"], "n_b": votes["n_b"]}
        )[ok].reset_index(drop=True)
        method_judges = {k: v[ok] for k, v in judges.items()}
        if method["a"].nunique() + method["b"].nunique() < 3:
            rank_note = "no method-level figures: fewer than three methods"
        else:
            ranks = ag.rank_correlation(method, method_judges, n_boot=args.n_boot, seed=args.seed)
            scores = ag.score_table(method, method_judges)
            bd = _bd(args, method, method_judges, seen, ok)
    out = args.output
    _write_table(storage.join(out, "agreement.parquet"), table)
    _write_table(storage.join(out, "rank_correlation.parquet"), ranks)
    _write_table(storage.join(out, "method_scores.parquet"), scores)
    if bd is not None:
        _write_table(storage.join(out, "bd_rate.parquet"), bd)
    summary = {
        "triplets": storage.display(args.triplets),
        "results": [storage.display(r) for r in results_list],
        "n_boot": args.n_boot,
        "seed": args.seed,
        "left_out": left_out,
        "scoring_errors": scoring_errors,
        "rank_note": rank_note,
        "agreement": table.to_dict("records"),
        "rank_correlation": ranks.to_dict("records"),
        "method_scores": scores.to_dict("records"),
        "bd_rate": None if bd is None else bd.to_dict("records"),
    }
    storage.write_text(storage.join(out, "agreement.json"), jsonable.dumps(summary, indent=2) + "\n")
    storage.write_text(storage.join(out, "agreement.md"), _markdown(table, ranks, bd, left_out))
    figures = [f for f in (page.agreement_figure(table), page.ranking_figure(scores, ranks)) if f is not None]
    for f in figures:
        storage.write_bytes(storage.join(out, "plots", f"{f.name}.png"), f.png)
        storage.write_bytes(storage.join(out, "plots", f"{f.name}.svg"), f.svg)
    storage.write_text(storage.join(out, "agreement.html"), page.render(summary, table, ranks, bd, figures))
    return summary


@command
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    summary = run(args, argv)
    for r in summary["agreement"]:
        if r["group"] == ag.ALL:
            print(
                f"{r['judge']}: {r['agreement']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] ({r['n_answers']} answers)"
            )
    for r in summary["rank_correlation"]:
        print(f"{r['judge']}: Spearman {r['spearman']:.3f} over {r['n_methods']} methods")
    if summary["rank_note"]:
        print(summary["rank_note"])
    print(
        f"outputs in {storage.display(args.output)}: agreement.html, agreement.md, agreement.json, *.parquet"
    )
    return EXIT_ROW_ERRORS if summary["scoring_errors"] else EXIT_OK
