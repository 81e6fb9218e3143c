"""PRFNet against people on mucped23, k-fold over originals: the table of docs/human-agreement.md.

Run from the repository root::

    .venv/bin/python benchmarks/human_kfold.py --data ../shared/data/mucped23 --output /tmp/human-kfold

Stages (each cached in ``--output``; delete a file to redo its stage):

1. ``images.parquet``: every study method (``methods.csv``) encoded and decoded for every original through
   ``pipeline.codecs`` (libjpeg-turbo and MozJPEG bit exact with the study, checked against
   ``reproduced_bytes.csv``; jpegli with cjpegli's settings), the decoded PNGs under ``images/``, with bytes, bpp and
   the classic metrics of each image (PSNR, PSNR-Y, MS-SSIM, SSIMULACRA2 when installed).
2. ``triplets.parquet``: the answers folded per original and unordered pair (:func:`pipeline.human.study.aggregate`)
   in ``prfeval train``'s triplet format: ``label`` = share of answers for A, ``weight`` = ``votes`` = answers.
3. ``packaged.parquet``: the logit of every pair by the synthetic-only ``prfnet-tiny`` (stage 1, the packaged
   checkpoint before the human-trained one), scored as ``prfeval evaluate`` scores (whole images on the patch
   grid, mean patch logit).
4. per recipe (``--recipes``) and fold: ``prfeval train`` on the fold's training originals with the fold's test
   originals held out (``--holdout``); the held-out logits of the last epoch (``validation/epoch-NNNN.parquet`` in
   the run folder) are the fold's figures. Folds are fixed by ``--seed`` before anything is trained.
5. ``agreement.csv`` / ``agreement.md``: agreement of every judge with the answers on held-out originals, pooled
   over the folds, with 95 % intervals from the bootstrap over originals, overall and for same- and
   cross-encoder pairs; per fold; the experiments table; ``learning_curve.csv``.

Add ``--plot docs/human-agreement.png`` to draw the figure of the document.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.human import agreement as ag  # noqa: E402
from pipeline.human import study  # noqa: E402

METRICS = ("psnr", "psnr_y", "ms_ssim", "ssimulacra2")
METRIC_NAMES = {"psnr": "PSNR (RGB)", "psnr_y": "PSNR-Y", "ms_ssim": "MS-SSIM", "ssimulacra2": "SSIMULACRA2"}
PACKAGED = "PRFNet synthetic-only"  # stage 1, the packaged checkpoint before the human-trained one

# recipe name -> what it is, its prfeval train options (crops of the model's 128-px patch, with flips, by default),
# and extras: synthetic triplets mixed in at a weight, the fraction of a fold's training originals used
FT = ["--init-checkpoint", "packaged", "--label-smoothing", "0.0"]
RECIPES: dict[str, dict] = {
    "finetune": {"about": "init from the synthetic-only checkpoint; lr 5e-4", "args": [*FT, "--lr", "5e-4"]},
    "finetune-half": {"about": "as finetune, on half of a fold's training originals", "args": [*FT, "--lr", "5e-4"],
                      "train_fraction": 0.5},
    "finetune-lr2e-3": {"about": "as finetune, peak lr 2e-3", "args": [*FT, "--lr", "2e-3"]},
    "finetune-lr1e-4": {"about": "as finetune, peak lr 1e-4", "args": [*FT, "--lr", "1e-4"]},
    "finetune-ls0.2": {"about": "as finetune, label smoothing 0.2", "args": [*FT[:2], "--label-smoothing", "0.2",
                                                                            "--lr", "5e-4"]},
    "finetune-mix": {"about": "as finetune, 1,000 synthetic triplets mixed in (weight 1 each)",
                     "args": [*FT, "--lr", "5e-4"], "synthetic_weight": 1.0},
    "finetune-crop192": {"about": "as finetune, 192-px crops", "args": [*FT, "--lr", "5e-4", "--crop", "192"]},
    "scratch": {"about": "random init, lr 2e-3", "args": ["--label-smoothing", "0.0", "--lr", "2e-3"]},
}  # fmt: skip


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def prepare_images(data: Path, out: Path, metrics: tuple[str, ...]) -> pd.DataFrame:
    target = out / "images.parquet"
    if target.exists():
        return pd.read_parquet(target)
    from PIL import Image

    from pipeline.codecs import get_codec, parse_spec
    from pipeline.image import decoding
    from pipeline.image import metrics as metric_mod

    methods = study.read_methods(str(data / "methods.csv"))
    exact = pd.read_csv(data / "reproduced_bytes.csv", dtype={"originalName": str})
    exact_sha = {
        (m, o): s
        for m, o, s in zip(exact["method"], exact["originalName"], exact["jpeg_sha256"], strict=True)
    }
    originals = sorted(p.stem for p in (data / "refs").glob("*.png"))
    rows = []
    for o in originals:
        ref = decoding.read_image(str(data / "refs" / f"{o}.png"))
        stats = metric_mod.ReferenceStats(ref)
        for m in methods.itertuples():
            setting = parse_spec(m.spec)[0]
            codec = get_codec(setting.codec)
            payload = codec.encode(ref, setting.value, setting.option_values)
            decoded = codec.decode(payload)
            path = out / "images" / m.method / f"{o}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(decoded).save(path, compress_level=1)
            sha = hashlib.sha256(payload).hexdigest()
            values = metric_mod.compute_all(stats, decoded, metrics)
            rows.append(
                {
                    "original": o,
                    "method": m.method,
                    "family": m.family,
                    "uri": str(path),
                    "bytes": len(payload),
                    "bpp": 8 * len(payload) / (ref.shape[0] * ref.shape[1]),
                    "bit_exact": exact_sha.get((m.method, o)) == sha if (m.method, o) in exact_sha else None,
                    **{k: (np.nan if v is None else float(v)) for k, v in values.items()},
                }
            )
        log(f"images: {o} done ({len(rows)} images)")
    df = pd.DataFrame(rows)
    df.to_parquet(target, index=False)
    return df


def prepare_triplets(data: Path, out: Path, images: pd.DataFrame) -> pd.DataFrame:
    target = out / "triplets.parquet"
    if target.exists():
        return pd.read_parquet(target)
    methods = study.read_methods(str(data / "methods.csv"))
    answers = study.read_answers(str(data / "answers.csv"), methods=methods)
    pairs = study.aggregate(answers)
    info = images.set_index(["original", "method"])
    a = info.loc[list(zip(pairs["original"], pairs["a"], strict=True))].reset_index(drop=True)
    b = info.loc[list(zip(pairs["original"], pairs["b"], strict=True))].reset_index(drop=True)
    fam_a, fam_b = a["family"].to_numpy(), b["family"].to_numpy()
    df = pd.DataFrame(
        {
            "ref_id": pairs["original"],
            "ref_uri": [str(data / "refs" / f"{o}.png") for o in pairs["original"]],
            "a_uri": a["uri"],
            "b_uri": b["uri"],
            "label": pairs["label"],
            "votes": pairs["n"],
            "weight": pairs["n"].astype(float),
            "family": ag.encoder_pairing(fam_a, fam_b),
            "a_bpp": a["bpp"],
            "b_bpp": b["bpp"],
            # not training columns: kept for the figures
            "a": pairs["a"],
            "b": pairs["b"],
            "n_a": pairs["n_a"],
            "n_b": pairs["n_b"],
            "bit_exact": (a["bit_exact"].fillna(False) & b["bit_exact"].fillna(False)).astype(bool),
        }
    )
    for m in METRICS:
        if m in a.columns:
            df[f"a_{m}"], df[f"b_{m}"] = a[m], b[m]
    df["a_bytes"], df["b_bytes"] = a["bytes"], b["bytes"]
    df.to_parquet(target, index=False)
    log(f"triplets: {len(df)} pairs, {int(df['votes'].sum())} answers, {df['ref_id'].nunique()} originals")
    return df


PACKAGED_FILE = ROOT / "model" / "weights" / "prfnet-tiny.safetensors"
SYNTHETIC_COMMAND = [
    "--triplets",
    "synthetic:samples",
    "--model",
    "prfnet-tiny",
    "--holdout",
    "chelsea,rocket",
    "--epochs",
    "4",
    "--batch-size",
    "16",
    "--lr",
    "2e-3",
    "--label-smoothing",
    "0.2",
    "--workers",
    "2",
]


def synthetic_checkpoint(out: Path) -> Path:
    """The synthetic-only prfnet-tiny (stage 1): the packaged file while it is that one, else trained again.

    The packaged checkpoint was first trained on known-order synthetic triplets only; once the human-trained one
    replaces it, the baseline and the starting point of every recipe is that first stage, retrained with its
    recorded command (seeded: the same run gives the same epoch losses and held-out metrics).
    """
    from model import load_checkpoint

    if (
        load_checkpoint(str(PACKAGED_FILE))
        .metadata.get("command", "")
        .startswith("prfeval train --triplets synthetic:samples")
    ):
        return PACKAGED_FILE
    run = out / "synthetic-stage" / "run"
    final = run / "prfnet-tiny.safetensors"
    state = run / "train.json"
    if not (state.exists() and json.loads(state.read_text()).get("status") == "finished"):
        from jobs import train as train_job

        log("training the synthetic stage (prfeval train --triplets synthetic:samples ...), about 6 minutes")
        resume = ["--resume"] if run.exists() else []
        if train_job.main([*SYNTHETIC_COMMAND, "--output", str(run), *resume]) != 0:
            raise SystemExit("the synthetic stage failed")
    return final


def score_checkpoint(uri: str, frame: pd.DataFrame) -> np.ndarray:
    """Logits of every row of ``frame`` with the checkpoint at ``uri``, scored as ``prfeval evaluate`` scores."""
    import torch

    from model import load_checkpoint
    from pipeline.training import validate

    torch.set_num_threads(2)
    net = load_checkpoint(uri).model
    logits = validate.score_frame(net, frame.reset_index(drop=True))
    return np.array([logits.get(i, np.nan) for i in range(len(frame))])


def packaged_logits(out: Path, triplets: pd.DataFrame) -> np.ndarray:
    target = out / "packaged.parquet"
    if not target.exists():
        started = time.perf_counter()
        logit = score_checkpoint(str(synthetic_checkpoint(out)), triplets)
        pd.DataFrame({"logit": logit}).to_parquet(target, index=False)
        log(f"packaged checkpoint scored {len(triplets)} pairs in {time.perf_counter() - started:.0f} s")
    return pd.read_parquet(target)["logit"].to_numpy()


def make_folds(originals: list[str], k: int, seed: int) -> list[list[str]]:
    order = np.random.default_rng(seed).permutation(sorted(originals))
    return [sorted(map(str, order[i::k])) for i in range(k)]


def synthetic_rows(out: Path, weight: float, limit: int, seed: int) -> pd.DataFrame:
    from pipeline.training import synthetic
    from pipeline.training.triplets import read_triplets

    uri = synthetic.generate(synthetic.parse("synthetic:samples"), str(out / "synthetic"), log=log)
    df = read_triplets(uri)
    if limit and len(df) > limit:
        df = df.sample(n=limit, random_state=seed)
    df = df.assign(ref_id="synthetic:" + df["ref_id"].astype(str), weight=weight, split="train")
    return df


def train_fold(
    out: Path, name: str, recipe: dict, fold: int, train_refs: list[str], test_refs: list[str], args
) -> pd.DataFrame:
    """Train one recipe on one fold; the held-out logits of its last epoch (cached)."""
    from jobs import train as train_job

    folder = out / "runs" / name / f"fold{fold}"
    run = folder / "run"
    val = run / "validation" / f"epoch-{args.epochs:04d}.parquet"
    if val.exists():
        return pd.read_parquet(val)
    triplets = pd.read_parquet(out / "triplets.parquet")
    rng = np.random.default_rng([args.seed, fold])
    fraction = recipe.get("train_fraction", 1.0)
    use = sorted(rng.choice(train_refs, size=round(len(train_refs) * fraction), replace=False))
    keep = triplets[triplets["ref_id"].isin(set(use) | set(test_refs))]
    table = keep[
        ["ref_id", "ref_uri", "a_uri", "b_uri", "label", "votes", "weight", "family", "a_bpp", "b_bpp"]
    ]
    table = table.assign(split=np.where(table["ref_id"].isin(test_refs), "val", "train"))
    if recipe.get("synthetic_weight"):
        syn = synthetic_rows(out, recipe["synthetic_weight"], args.synthetic_limit, args.seed)
        table = pd.concat([table, syn[table.columns]], ignore_index=True)
    folder.mkdir(parents=True, exist_ok=True)
    table_uri = folder / "triplets.parquet"
    table.to_parquet(table_uri, index=False)
    extra = [str(synthetic_checkpoint(out)) if a == "packaged" else a for a in recipe["args"]]
    argv = [
        "--triplets", str(table_uri), "--model", "prfnet-tiny", "--output", str(run),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
        "--val-every", str(args.epochs), "--warmup-steps", "20", "--log-every", "50",
        *extra,
    ]  # fmt: skip
    if run.exists():
        argv.append("--resume")
    started = time.perf_counter()
    log(f"train {name} fold {fold}: {len(use)} training originals, {len(table)} triplets: {' '.join(argv)}")
    code = train_job.main(argv)
    if code != 0:
        raise SystemExit(f"training {name} fold {fold} failed (exit {code})")
    seconds = time.perf_counter() - started
    (folder / "seconds.txt").write_text(f"{seconds:.1f}\n")
    log(f"train {name} fold {fold}: {seconds:.0f} s")
    return pd.read_parquet(val)


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def classic_judges(triplets: pd.DataFrame) -> dict[str, np.ndarray]:
    judges = {}
    for m in METRICS:
        if f"a_{m}" in triplets.columns and triplets[f"a_{m}"].notna().any():
            judges[METRIC_NAMES[m]] = ag.preference_from_scores(triplets[f"a_{m}"], triplets[f"b_{m}"])
    judges["file size"] = ag.preference_from_scores(triplets["a_bytes"], triplets["b_bytes"])
    return judges


def pair_logits(triplets: pd.DataFrame, frame: pd.DataFrame) -> np.ndarray:
    """The logits of ``frame`` (held-out rows of one run) in the order of ``triplets`` (NaN where absent)."""
    key = pd.MultiIndex.from_arrays([frame["a_uri"], frame["b_uri"]])
    s = pd.Series(frame["logit"].to_numpy(), index=key)
    want = pd.MultiIndex.from_arrays([triplets["a_uri"], triplets["b_uri"]])
    return s.reindex(want).to_numpy()


def table_for(triplets: pd.DataFrame, judges: dict[str, np.ndarray], n_boot: int) -> pd.DataFrame:
    groups = {
        "pairing": np.asarray(triplets["family"], dtype=object),
        "encodings": np.where(triplets["bit_exact"], "bit exact", None).astype(object),
    }
    pairs = triplets.assign(original=triplets["ref_id"])
    return ag.agreement_table(pairs, judges, groups=groups, n_boot=n_boot, seed=0)


def fmt_ci(row) -> str:
    return f"{row.agreement:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]"


def markdown_table(table: pd.DataFrame, judges: list[str]) -> str:
    groups = ["all", "pairing: same encoder", "pairing: cross encoder", "encodings: bit exact"]
    lines = [
        "| judge | all answers | same encoder | cross encoder | bit-exact encodings |",
        "| --- | --- | --- | --- | --- |",
    ]
    for judge in [ag.CEILING, *judges]:
        cells = []
        for g in groups:
            r = table[(table["judge"] == judge) & (table["group"] == g)]
            cells.append(fmt_ci(r.iloc[0]) if len(r) else "")
        lines.append(f"| {judge} | " + " | ".join(cells) + " |")
    counts = [
        int(table[(table["judge"] == ag.CEILING) & (table["group"] == g)]["n_answers"].sum()) for g in groups
    ]
    lines.append("| answers | " + " | ".join(f"{c:,}" for c in counts) + " |")
    return "\n".join(lines)


def paired_differences(triplets: pd.DataFrame, judges: dict[str, np.ndarray], n_boot: int) -> pd.DataFrame:
    """Agreement of each judge minus the synthetic-only checkpoint's, with an interval from the shared draws."""
    pairs = triplets.assign(original=triplets["ref_id"])
    n = (pairs["n_a"] + pairs["n_b"]).to_numpy(np.float64)
    base = ag.agreeing_answers(pairs, judges[PACKAGED])
    groups = {"all": np.ones(len(pairs), dtype=bool)}
    for g in (ag.SAME_ENCODER, ag.CROSS_ENCODER):
        groups[g] = (pairs["family"] == g).to_numpy()
    rows, nums, dens = [], [], []
    for judge, pref in judges.items():
        if judge == PACKAGED:
            continue
        d = ag.agreeing_answers(pairs, pref) - base
        for g, sel in groups.items():
            rows.append((judge, g))
            nums.append(np.where(sel, d, 0.0))
            dens.append(np.where(sel, n, 0.0))
    point, low, high = ag.ratio_bootstrap(
        np.stack(nums, axis=1), np.stack(dens, axis=1), pairs["original"].to_numpy(), n_boot=n_boot, seed=0
    )
    return pd.DataFrame(
        [(j, g, p, lo, hi) for (j, g), p, lo, hi in zip(rows, point, low, high, strict=True)],
        columns=["judge", "group", "diff", "ci_low", "ci_high"],
    )


def train_final(out: Path, name: str, args) -> Path:
    """The recipe trained on all originals (nothing held out): the candidate for the packaged checkpoint."""
    from jobs import train as train_job

    folder = out / "final" / name
    run = folder / "run"
    final = run / "prfnet-tiny.safetensors"
    if (run / "train.json").exists() and json.loads((run / "train.json").read_text()).get(
        "status"
    ) == "finished":
        return final
    triplets = pd.read_parquet(out / "triplets.parquet")
    table = triplets[
        ["ref_id", "ref_uri", "a_uri", "b_uri", "label", "votes", "weight", "family", "a_bpp", "b_bpp"]
    ]
    # validation: the synthetic known-order triplets of the packaged checkpoint's held-out photos, a check that the
    # ranking of distortion strength it learned there survives the fine-tuning
    from pipeline.training import synthetic
    from pipeline.training.triplets import read_triplets

    spec = synthetic.parse("synthetic:samples")
    held = synthetic.SyntheticSpec(photos=("chelsea", "rocket"), sides=spec.sides, seed=spec.seed)
    check = read_triplets(synthetic.generate(held, str(out / "synthetic-heldout"), log=log))
    check = check.assign(votes=1, weight=1.0)[table.columns]
    folder.mkdir(parents=True, exist_ok=True)
    table_uri = folder / "triplets.parquet"
    both = pd.concat([table.assign(split="train"), check.assign(split="val")], ignore_index=True)
    both.to_parquet(table_uri, index=False)
    extra = [str(synthetic_checkpoint(out)) if a == "packaged" else a for a in RECIPES[name]["args"]]
    argv = [
        "--triplets", str(table_uri), "--model", "prfnet-tiny", "--output", str(run),
        "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--workers", str(args.workers),
        "--warmup-steps", "20", "--log-every", "50", *extra,
    ]  # fmt: skip
    if run.exists():
        argv.append("--resume")
    log(f"final {name}: all {table['ref_id'].nunique()} originals, {len(both)} triplets: {' '.join(argv)}")
    if train_job.main(argv) != 0:
        raise SystemExit(f"final training of {name} failed")
    return final


def plot(path: Path, pooled: pd.DataFrame, judges: list[str], curve: pd.DataFrame) -> None:
    import matplotlib.pyplot as plt  # the Agg backend is chosen in main

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), gridspec_kw={"width_ratios": [1.6, 1]})
    allrows = pooled[pooled["group"] == "all"].set_index("judge")
    ceiling = float(allrows.loc[ag.CEILING, "agreement"])
    order = sorted(judges, key=lambda j: allrows.loc[j, "agreement"])
    y = np.arange(len(order))
    pts = allrows.loc[order]
    left.errorbar(
        pts["agreement"], y, xerr=[pts["agreement"] - pts["ci_low"], pts["ci_high"] - pts["agreement"]],
        fmt="o", color="k", capsize=3,
    )  # fmt: skip
    left.axvline(ceiling, color="tab:red", ls="--", label=f"majority-vote ceiling {ceiling:.3f}")
    left.axvline(0.9 * ceiling, color="tab:orange", ls=":", label=f"0.9 x ceiling {0.9 * ceiling:.3f}")
    left.set_yticks(y, order)
    left.set_xlabel("share of answers agreed with (held-out originals, 95% CI over originals)")
    left.legend(loc="lower right", fontsize=8)
    left.set_title("mucped23: 9,070 answers, 33 originals, 3-fold by original", fontsize=10)
    right.errorbar(
        curve["train_originals"], curve["agreement"],
        yerr=[curve["agreement"] - curve["ci_low"], curve["ci_high"] - curve["agreement"]],
        fmt="o-", color="tab:blue", capsize=3, label="PRFNet-tiny",
    )  # fmt: skip
    best = max(
        (j for j in judges if not j.startswith("PRFNet") and j != "file size"),
        key=lambda j: allrows.loc[j, "agreement"],
    )
    right.axhline(allrows.loc[best, "agreement"], color="k", ls="-.", label=f"{best} (no training)")
    right.axhline(ceiling, color="tab:red", ls="--", label="ceiling")
    right.axhline(0.9 * ceiling, color="tab:orange", ls=":", label="0.9 x ceiling (goal)")
    right.set(xlabel="human-rated training originals per fold", ylabel="held-out agreement")
    right.set_title("learning curve", fontsize=10)
    right.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"figure: {path}")


def report(
    out: Path, triplets: pd.DataFrame, runs: dict[str, np.ndarray], packaged: np.ndarray, args
) -> None:
    classic = classic_judges(triplets)
    judges = {PACKAGED: sigmoid(packaged), **{f"PRFNet {k}": sigmoid(v) for k, v in runs.items()}, **classic}
    pooled = table_for(triplets, judges, args.n_boot)
    pooled.insert(0, "fold", "pooled")
    folds = [pooled]
    for k, refs in enumerate(make_folds(sorted(triplets["ref_id"].unique()), args.folds, args.seed)):
        sel = triplets["ref_id"].isin(refs).to_numpy()
        t = table_for(
            triplets[sel].reset_index(drop=True), {j: p[sel] for j, p in judges.items()}, args.n_boot
        )
        t.insert(0, "fold", str(k))
        folds.append(t)
    everything = pd.concat(folds, ignore_index=True)
    everything.to_csv(out / "agreement.csv", index=False)
    names = list(judges)
    text = ["## Pooled over folds (every original held out once)", "", markdown_table(pooled, names), ""]
    for k in range(args.folds):
        t = everything[everything["fold"] == str(k)]
        text += [f"## Fold {k}", "", markdown_table(t, names), ""]
    # learning curve: 0 (packaged, no human answers), half and all of a fold's training originals
    curve_rows = []
    for n_train, judge in ((0, PACKAGED), (11, "PRFNet finetune-half"), (22, "PRFNet finetune")):
        r = pooled[(pooled["judge"] == judge) & (pooled["group"] == "all")]
        if len(r):
            curve_rows.append(
                {"train_originals": n_train, "judge": judge, **r.iloc[0][["agreement", "ci_low", "ci_high"]]}
            )
    curve = pd.DataFrame(curve_rows)
    curve.to_csv(out / "learning_curve.csv", index=False)
    exp = [
        "| recipe | what | all | same encoder | cross encoder | wall minutes per fold (2 shared CPUs) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in runs:
        row = {
            g: pooled[(pooled["judge"] == f"PRFNet {name}") & (pooled["group"] == g)].iloc[0]
            for g in ("all", "pairing: same encoder", "pairing: cross encoder")
        }
        secs = [float(p.read_text()) for p in (out / "runs" / name).glob("fold*/seconds.txt")]
        minutes = f"{np.mean(secs) / 60:.1f}" if secs else ""
        exp.append(
            f"| {name} | {RECIPES[name]['about']} | "
            + " | ".join(fmt_ci(r) for r in row.values())
            + f" | {minutes} |"
        )
    text += ["## Experiments", "", *exp, ""]
    diffs = paired_differences(triplets, judges, args.n_boot)
    diffs.to_csv(out / "differences.csv", index=False)
    text += [
        "## Paired differences (judge minus PRFNet synthetic-only, same bootstrap draws of originals)",
        "",
    ]
    text += ["| judge | all | same encoder | cross encoder |", "| --- | --- | --- | --- |"]
    for judge, rows in diffs.groupby("judge", sort=False):
        cells = [f"{r.diff:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]" for r in rows.itertuples()]
        text.append(f"| {judge} | " + " | ".join(cells) + " |")
    text.append("")
    (out / "agreement.md").write_text("\n".join(text))
    print("\n".join(text))
    if args.plot:
        shown = [PACKAGED] + [f"PRFNet {k}" for k in runs if k == args.best] + list(classic)
        plot(args.plot, pooled, shown, curve)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", required=True, type=Path, help="the mucped23 folder (answers.csv, methods.csv, refs/)"
    )
    p.add_argument("--output", required=True, type=Path, help="work folder (cached stages)")
    p.add_argument("--stage", default="all", choices=["prepare", "train", "report", "all"])
    p.add_argument(
        "--recipes", default="finetune,finetune-half", help=f"comma-separated, of: {', '.join(RECIPES)}"
    )
    p.add_argument("--best", default="finetune", help="the recipe shown in the figure")
    p.add_argument("--folds", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument(
        "--synthetic-limit", type=int, default=1000, help="synthetic triplets mixed in (finetune-mix)"
    )
    p.add_argument("--n-boot", type=int, default=2000)
    p.add_argument("--plot", type=Path, help="write the figure here (PNG)")
    p.add_argument("--final", help="train this recipe on all originals (the packaging candidate)")
    args = p.parse_args(argv)
    import matplotlib

    matplotlib.use("Agg")
    out, data = args.output.resolve(), args.data.resolve()
    out.mkdir(parents=True, exist_ok=True)
    from pipeline.image import metrics as metric_mod

    usable = tuple(m for m in METRICS if m in {i.name for i in metric_mod.available_metrics()})
    images = prepare_images(data, out, usable)
    triplets = prepare_triplets(data, out, images)
    if args.stage == "prepare":
        return 0
    packaged = packaged_logits(out, triplets)
    folds = make_folds(sorted(triplets["ref_id"].unique()), args.folds, args.seed)
    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in RECIPES]
    if unknown:
        p.error(f"unknown recipe(s) {', '.join(unknown)}")
    runs = {}
    for name in recipes:
        logits = np.full(len(triplets), np.nan)
        for k, test_refs in enumerate(folds):
            train_refs = sorted(set(triplets["ref_id"]) - set(test_refs))
            val = out / "runs" / name / f"fold{k}" / "run" / "validation" / f"epoch-{args.epochs:04d}.parquet"
            if args.stage == "report":
                if not val.exists():
                    continue
                frame = pd.read_parquet(val)
            else:
                frame = train_fold(out, name, RECIPES[name], k, train_refs, test_refs, args)
            got = pair_logits(triplets, frame)
            logits = np.where(np.isfinite(got), got, logits)
        if np.isfinite(logits).all():
            runs[name] = logits
        else:
            log(
                f"{name}: {int(np.isnan(logits).sum())} pairs without a held-out logit yet; left out of the report"
            )
    if args.stage in ("report", "all"):
        report(out, triplets, runs, packaged, args)
    if args.final:
        log(f"final checkpoint: {train_final(out, args.final, args)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
