"""`regress`: matching two runs, the triplet scoring groups, and the scored triplets.

Matching
--------
Images of the baseline and the candidate run are matched on ``(ref_id, codec, setting)`` (a missing setting counts
as the empty string). A key present more than once in one run is *ambiguous* and left out. A reference id whose
image differs between the runs (``ref_uri`` not the same location, and ``same_reference`` — a content check the
caller supplies — does not vouch for it either) is a *reference mismatch*: all its images are left out. What
remains is *matched* (in both runs), *only in the baseline* (e.g. the candidate build failed on them) or *only in
the candidate*. All of this is reported; nothing of it is an error.

Triplets
--------
One scoring group per reference: its matched candidate and baseline images, ids prefixed ``candidate:`` and
``baseline:``, each candidate listed right before its baseline, and the explicit pairs
``["candidate:<id>", "baseline:<id>"]``. So ``p_a`` of a pair is P(candidate output closer to the reference than
the baseline output), and a pair of identical images gives exactly 0.5 (PRFNet is antisymmetric). The listing order
also makes the candidate come first under a pairing strategy, so the orientation holds whichever way the scoring
path forms pairs; :func:`triplets` keeps only the requested pairs and reorients any pair found the other way round.


The per-triplet statistics (:data:`STATS`): ``p`` = P(candidate better); ``d_psnr`` = candidate − baseline PSNR in
dB (PSNR capped at :data:`PSNR_CAP` so lossless outputs compare); ``d_ms_ssim``; ``log_rate`` = ln(candidate bpp /
baseline bpp). They come from the regress run's own tables: the classic metrics are measured again there, on both
sides, by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.image.metrics import get_metric
from pipeline.io import storage
from pipeline.io.jsonable import plain
from pipeline.io.records import group_key

BASELINE, CANDIDATE = "baseline", "candidate"
PREFIX = {BASELINE: "baseline:", CANDIDATE: "candidate:"}
KEY = ["ref_id", "codec", "setting"]
INPUT_COLUMNS = ("ref_id", "ref_uri", "dist_id", "dist_uri", "codec", "codec_version", "setting", "bytes")
PSNR_CAP = 100.0  # dB; PSNR of an image equal to its reference is infinite
STATS = ("p", "d_psnr", "d_ms_ssim", "log_rate")


@dataclass
class Matching:
    """Two runs' images matched on (ref_id, codec, setting), and everything that did not match."""

    matched: pd.DataFrame  # KEY + baseline_*/candidate_* of ref_uri, dist_id, dist_uri, codec_version, bytes
    only_baseline: pd.DataFrame  # KEY + dist_id
    only_candidate: pd.DataFrame  # KEY + dist_id
    ambiguous: pd.DataFrame  # side + KEY + n
    ref_mismatch: pd.DataFrame  # ref_id, baseline_ref_uri, candidate_ref_uri, images

    def counts(self) -> dict[str, int]:
        return {
            "matched": len(self.matched),
            "references": int(self.matched["ref_id"].nunique()),
            "only_baseline": len(self.only_baseline),
            "only_candidate": len(self.only_candidate),
            "ambiguous": int(self.ambiguous["n"].sum()) if len(self.ambiguous) else 0,
            "ref_mismatch": len(self.ref_mismatch),
        }


def _prepare(df: pd.DataFrame, side: str) -> pd.DataFrame:
    missing = [
        c for c in INPUT_COLUMNS if c not in df.columns and c not in ("codec_version", "setting", "bytes")
    ]
    if missing:
        raise ValueError(f"the {side} images lack column(s) {', '.join(missing)}")
    out = pd.DataFrame({c: df[c] if c in df.columns else None for c in INPUT_COLUMNS}, index=df.index)
    for c in ("ref_id", "codec", "dist_id"):
        out[c] = out[c].astype(str)
    out["setting"] = out["setting"].map(
        lambda v: "" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    )
    out["bytes"] = pd.to_numeric(out["bytes"], errors="coerce").astype("Int64")
    return out.reset_index(drop=True)


def match_runs(
    baseline: pd.DataFrame,
    candidate: pd.DataFrame,
    *,
    same_reference: Callable[[str, str], bool] | None = None,
) -> Matching:
    """Match the images (rows of an images table or manifest) of two runs; see the module docstring.

    ``same_reference(baseline_uri, candidate_uri)`` is asked only when a reference id's two URIs differ (e.g. a
    content-hash comparison); without it, different locations mean different references.
    """
    b, c = _prepare(baseline, BASELINE), _prepare(candidate, CANDIDATE)
    ambiguous = []
    for side, df in ((BASELINE, b), (CANDIDATE, c)):
        dup = df[df.duplicated(KEY, keep=False)]
        if len(dup):
            ambiguous.append(dup.groupby(KEY).size().reset_index(name="n").assign(side=side))
    amb = (
        pd.concat(ambiguous, ignore_index=True) if ambiguous else pd.DataFrame(columns=["side", *KEY, "n"])
    )[["side", *KEY, "n"]]
    amb_keys = set(map(tuple, amb[KEY].to_numpy())) if len(amb) else set()

    refs_b = b.groupby("ref_id", sort=True)["ref_uri"].first()
    refs_c = c.groupby("ref_id", sort=True)["ref_uri"].first()
    mismatch = []
    for ref_id in refs_b.index.intersection(refs_c.index):
        ub, uc = str(refs_b[ref_id]), str(refs_c[ref_id])
        if storage.canonical(ub) == storage.canonical(uc):
            continue
        if same_reference is not None and same_reference(ub, uc):
            continue
        n = int((b["ref_id"] == ref_id).sum() + (c["ref_id"] == ref_id).sum())
        mismatch.append({"ref_id": ref_id, "baseline_ref_uri": ub, "candidate_ref_uri": uc, "images": n})
    ref_mismatch = pd.DataFrame(
        mismatch, columns=["ref_id", "baseline_ref_uri", "candidate_ref_uri", "images"]
    )
    bad_refs = set(ref_mismatch["ref_id"])

    def usable(df: pd.DataFrame) -> pd.DataFrame:
        keys = list(map(tuple, df[KEY].to_numpy()))
        keep = [k not in amb_keys and k[0] not in bad_refs for k in keys]
        return df[keep]

    side_cols = ["ref_uri", "dist_id", "dist_uri", "codec_version", "bytes"]
    bb = usable(b).rename(columns={k: f"baseline_{k}" for k in side_cols})
    cc = usable(c).rename(columns={k: f"candidate_{k}" for k in side_cols})
    merged = bb.merge(cc, on=KEY, how="outer", indicator=True, sort=True)
    matched = merged[merged["_merge"] == "both"].drop(columns="_merge").reset_index(drop=True)
    only_b = merged[merged["_merge"] == "left_only"]
    only_c = merged[merged["_merge"] == "right_only"]
    return Matching(
        matched=matched[[*KEY, *[f"{s}_{k}" for s in (BASELINE, CANDIDATE) for k in side_cols]]],
        only_baseline=only_b[KEY].assign(dist_id=only_b["baseline_dist_id"]).reset_index(drop=True),
        only_candidate=only_c[KEY].assign(dist_id=only_c["candidate_dist_id"]).reset_index(drop=True),
        ambiguous=amb.reset_index(drop=True),
        ref_mismatch=ref_mismatch,
    )


def build_groups(matching: Matching) -> list[dict]:
    """One scoring group per reference (records of :func:`pipeline.scoring.manifest.groups` plus explicit ``pairs``)."""
    out = []
    for ref_id, g in matching.matched.groupby("ref_id", sort=True):
        dists, pairs = [], []
        for r in g.sort_values(["codec", "setting"], kind="stable").to_dict("records"):
            ids = {}
            for side in (CANDIDATE, BASELINE):  # candidate first: A of the pair under any pairing
                ids[side] = PREFIX[side] + r[f"{side}_dist_id"]
                nbytes = plain(r[f"{side}_bytes"])
                dists.append(
                    {
                        "dist_id": ids[side],
                        "dist_uri": r[f"{side}_dist_uri"],
                        "codec": r["codec"],
                        "codec_version": plain(r[f"{side}_codec_version"]),
                        "setting": r["setting"] or None,
                        "bytes": None if nbytes is None else int(nbytes),
                        "extras": {"side": side, "source_dist_id": r[f"{side}_dist_id"]},
                    }
                )
            pairs.append([ids[CANDIDATE], ids[BASELINE]])
        out.append(
            {
                "ref_id": str(ref_id),
                "ref_uri": g["baseline_ref_uri"].iloc[0],
                "key": group_key(str(ref_id)),
                "dists": dists,
                "pairs": pairs,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------- triplets


def _capped(metric: str) -> bool:
    """Whether identical images give an infinite value of ``metric`` (a PSNR), so it is capped for differences."""
    try:
        return math.isinf(get_metric(metric).best)
    except KeyError:
        return False


def triplets(
    images: pd.DataFrame, pairs: pd.DataFrame, matching: Matching, metrics: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scored triplets (one row per matched key) from the regress run's tables, and the matched keys not scored.

    Scored columns: KEY, the two dist ids, ``p`` (P candidate better), ``baseline_``/``candidate_`` bpp, psnr,
    ms_ssim and codec_version, and the per-triplet statistics of :data:`STATS`; then, for each of ``metrics``
    (further metric columns of ``images``), ``baseline_<m>``, ``candidate_<m>`` and ``d_<m>`` = candidate −
    baseline (a metric whose best value is infinite, a PSNR, capped at :data:`PSNR_CAP` like PSNR).
    """
    m = matching.matched.copy()
    m["cid"] = PREFIX[CANDIDATE] + m["candidate_dist_id"]
    m["bid"] = PREFIX[BASELINE] + m["baseline_dist_id"]
    lookup: dict[tuple[str, str], float] = {}
    for a, b, p in zip(pairs["a_id"], pairs["b_id"], pairs["p_a"], strict=True):
        lookup[(a, b)] = float(p)
    p = []
    for cid, bid in zip(m["cid"], m["bid"], strict=True):
        if (cid, bid) in lookup:
            p.append(lookup[(cid, bid)])
        elif (bid, cid) in lookup:
            p.append(1.0 - lookup[(bid, cid)])
        else:
            p.append(np.nan)
    m["p"] = p
    imgs = images.drop_duplicates("dist_id").set_index("dist_id")
    for side, col in ((CANDIDATE, "cid"), (BASELINE, "bid")):
        for metric in ("bpp", "psnr", "ms_ssim"):
            values = m[col].map(imgs[metric]) if metric in imgs else pd.Series(np.nan, index=m.index)
            m[f"{side}_{metric}"] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        m[f"{side}_present"] = m[col].isin(imgs.index)
    ok = m["p"].notna() & m["candidate_present"] & m["baseline_present"]
    cap = lambda s: s.clip(upper=PSNR_CAP)  # noqa: E731
    m["d_psnr"] = cap(m["candidate_psnr"]) - cap(m["baseline_psnr"])
    m["d_ms_ssim"] = m["candidate_ms_ssim"] - m["baseline_ms_ssim"]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = m["candidate_bpp"] / m["baseline_bpp"]
        m["log_rate"] = np.where((m["candidate_bpp"] > 0) & (m["baseline_bpp"] > 0), np.log(ratio), np.nan)
    keep = [
        *KEY,
        "baseline_dist_id",
        "candidate_dist_id",
        "baseline_codec_version",
        "candidate_codec_version",
        "p",
        *[f"{s}_{k}" for s in (BASELINE, CANDIDATE) for k in ("bpp", "psnr", "ms_ssim")],
        *STATS[1:],
    ]
    for metric in metrics:
        for side, col in ((BASELINE, "bid"), (CANDIDATE, "cid")):
            values = m[col].map(imgs[metric]) if metric in imgs else pd.Series(np.nan, index=m.index)
            m[f"{side}_{metric}"] = pd.to_numeric(values, errors="coerce").astype(np.float64)
        b, c = m[f"baseline_{metric}"], m[f"candidate_{metric}"]
        if _capped(metric):
            b, c = cap(b), cap(c)
        m[f"d_{metric}"] = c - b
        keep += [f"baseline_{metric}", f"candidate_{metric}", f"d_{metric}"]
    scored = m.loc[ok, keep].reset_index(drop=True)
    unscored = m.loc[~ok, [*KEY, "baseline_dist_id", "candidate_dist_id"]].reset_index(drop=True)
    return scored, unscored


__all__ = [
    "BASELINE",
    "CANDIDATE",
    "INPUT_COLUMNS",
    "KEY",
    "PREFIX",
    "PSNR_CAP",
    "STATS",
    "Matching",
    "build_groups",
    "match_runs",
    "triplets",
]
