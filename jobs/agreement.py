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

Output (``--output URI``, a folder): ``agreement.parquet``, ``rank_correlation.parquet``, ``bd_rate.parquet``
(when asked), ``agreement.json`` (everything, with the counts of triplets left out and why) and ``agreement.md``.
Exit codes: 0, or 2 for unusable input.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from jobs.common import EXIT_OK, ArgumentParser, UsageError, command
from pipeline.human import agreement as ag
from pipeline.image import metrics as metric_registry
from pipeline.io import jsonable, markdown, storage, tables
from pipeline.scoring import results as results_mod

FILE_SIZE = "file size"


def _parser() -> ArgumentParser:
    p = ArgumentParser(prog="prfeval agreement", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--triplets", required=True, help="triplet table with human votes (n_a, n_b or label+votes)"
    )
    p.add_argument("--results", required=True, action="append", help="results folder (repeat for several)")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap replicates over originals (default 1000)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--anchor", help="anchor codec of the BD-rate")
    p.add_argument("--test", help="test codec of the BD-rate")
    return p


def read_votes(uri: str) -> pd.DataFrame:
    """The triplet table as ``ref_uri, a_uri, b_uri, original, a, b, n_a, n_b`` (URIs resolved against its folder;
    ``original`` is ``ref_id`` when given, else the reference URI; ``a``/``b`` are the image URIs)."""
    df = tables.read_table(uri, error=UsageError, what="triplet table").to_pandas()
    shown = storage.display(uri)
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
    base = storage.parent(uri)
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
            for c in ("codec", "setting", "bpp")
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


def run(args) -> dict:
    votes = read_votes(args.triplets)
    judges: dict[str, np.ndarray] = {}
    seen = None
    left_out: dict[str, int] = {}
    for results in args.results:
        label = storage.display(results) if len(args.results) > 1 else ""
        found, s, counts = judges_of(results, votes, label)
        judges |= found
        seen = s if seen is None else seen.combine_first(s)
        left_out[f"triplets_without_images ({storage.display(results)})"] = counts["triplets_without_images"]
    groups = {}
    if seen is not None and {"a_codec", "b_codec"} <= set(seen.columns):
        known = seen["a_codec"].notna() & seen["b_codec"].notna()
        groups["pairing"] = np.where(known, ag.encoder_pairing(seen["a_codec"], seen["b_codec"]), None)
    if seen is not None and {"a_bpp", "b_bpp"} <= set(seen.columns):
        groups["bpp"] = ag.bpp_range(seen["a_bpp"].astype(float), seen["b_bpp"].astype(float))
    table = ag.agreement_table(votes, judges, groups=groups, n_boot=args.n_boot, seed=args.seed)
    # method level: a method is a codec and setting; triplets whose images were not found are left out
    method = None
    if seen is not None and {"a_codec", "a_setting", "b_codec", "b_setting"} <= set(seen.columns):
        ma = seen["a_codec"].astype(str) + ":" + seen["a_setting"].astype(str)
        mb = seen["b_codec"].astype(str) + ":" + seen["b_setting"].astype(str)
        ok = (seen["a_codec"].notna() & seen["b_codec"].notna() & (ma != mb)).to_numpy()
        method = pd.DataFrame(
            {"original": votes["original"], "a": ma, "b": mb, "n_a": votes["n_a"], "n_b": votes["n_b"]}
        )[ok].reset_index(drop=True)
        method_judges = {k: v[ok] for k, v in judges.items()}
    if method is None or method.empty:
        raise UsageError(
            "no triplet's images were found in the results (compare the triplets' URIs with dist_uri)"
        )
    ranks = ag.rank_correlation(method, method_judges, n_boot=args.n_boot, seed=args.seed)
    bd = None
    if args.anchor or args.test:
        if not (args.anchor and args.test):
            raise UsageError("--anchor and --test go together")
        codec_of = pd.concat([method["a"], method["b"]]).drop_duplicates()
        curves = {c: [m for m in codec_of if m.split(":", 1)[0] == c] for c in (args.anchor, args.test)}
        bpps = pd.concat(
            [
                pd.DataFrame({"m": method["a"], "bpp": seen["a_bpp"][ok].to_numpy()}),
                pd.DataFrame({"m": method["b"], "bpp": seen["b_bpp"][ok].to_numpy()}),
            ]
        )
        bpp = bpps.groupby("m")["bpp"].mean().to_dict()
        bd = ag.bd_rate_table(
            method,
            method_judges,
            bpp,
            curves,
            anchor=args.anchor,
            test=args.test,
            n_boot=args.n_boot,
            seed=args.seed,
        )
    out = args.output
    tables.write_parquet(
        storage.join(out, "agreement.parquet"), pa.Table.from_pandas(table, preserve_index=False)
    )
    tables.write_parquet(
        storage.join(out, "rank_correlation.parquet"), pa.Table.from_pandas(ranks, preserve_index=False)
    )
    if bd is not None:
        tables.write_parquet(
            storage.join(out, "bd_rate.parquet"), pa.Table.from_pandas(bd, preserve_index=False)
        )
    summary = {
        "triplets": storage.display(args.triplets),
        "results": [storage.display(r) for r in args.results],
        "n_boot": args.n_boot,
        "seed": args.seed,
        "left_out": left_out,
        "agreement": table.to_dict("records"),
        "rank_correlation": ranks.to_dict("records"),
        "bd_rate": None if bd is None else bd.to_dict("records"),
    }
    storage.write_text(storage.join(out, "agreement.json"), jsonable.dumps(summary, indent=2) + "\n")
    storage.write_text(storage.join(out, "agreement.md"), _markdown(table, ranks, bd, left_out))
    return summary


@command
def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    summary = run(args)
    for r in summary["agreement"]:
        if r["group"] == ag.ALL:
            print(
                f"{r['judge']}: {r['agreement']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}] ({r['n_answers']} answers)"
            )
    return EXIT_OK
