"""`regress`: the statistics rows, the BD-rate rows, the verdict per row and the :class:`Report`.

Statistics
----------
Per matched (reference, codec, setting), the triplet statistics of :data:`pipeline.regress.match.STATS`: ``p``
(P candidate better), ``d_psnr`` (dB, PSNR capped), ``d_ms_ssim`` and ``log_rate`` (ln of the bpp ratio).

Rows per codec (all its matched settings) and per (codec, setting) give the mean of each over the triplets and a
percentile interval at level ``1 - alpha`` from a bootstrap that resamples *references* with replacement
(:func:`pipeline.stats.bootstrap.cluster_bootstrap`): triplets of one photo are correlated, so the photo is the unit of evidence. The rate
change is the geometric mean, ``exp(mean log_rate) - 1``. Per codec, when both runs have at least 4 settings, the
Bjøntegaard delta rate of the candidate curve against the baseline curve (PSNR axis, per reference, then averaged
with the same bootstrap) measures the rate at equal quality across the whole curve. Each further metric judged
(``ssimulacra2``, ``butteraugli``...) adds ``baseline_<m>``, ``candidate_<m>``, the change ``d_<m>`` with its
interval ``d_<m>_low``/``d_<m>_high`` and ``<m>_triplets`` to every row, from the same bootstrap draws.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from pipeline.image.metrics import get_metric
from pipeline.io.jsonable import jsonable, plain
from pipeline.regress.criteria import Thresholds, criteria_for
from pipeline.regress.match import PSNR_CAP, STATS, Matching
from pipeline.stats import bdrate
from pipeline.stats.bootstrap import cluster_bootstrap

ALL_SETTINGS = "(all)"  # the setting column of per-codec rows


def _bd_rate_row(g: pd.DataFrame, th: Thresholds) -> dict:
    """Per-reference BD-rate (PSNR) of the candidate curve against the baseline's, averaged with the bootstrap."""
    values, refs, reasons = [], [], {}
    for ref_id, r in g.groupby("ref_id", sort=True):
        res = bdrate.bd_rate(
            r["baseline_bpp"].to_numpy(),
            r["baseline_psnr"].to_numpy(),
            r["candidate_bpp"].to_numpy(),
            r["candidate_psnr"].to_numpy(),
        )
        if res.ok:
            values.append(res.value)
            refs.append(ref_id)
        else:
            key = res.reason.split(" (", 1)[0]
            reasons[key] = reasons.get(key, 0) + 1
    why = "; ".join(f"{k}: {n} reference(s)" for k, n in reasons.items()) or None
    if not values:
        return {
            "bd_rate": np.nan,
            "bd_rate_low": np.nan,
            "bd_rate_high": np.nan,
            "bd_rate_refs": 0,
            "bd_rate_reason": why,
        }
    (iv,) = cluster_bootstrap(values, refs, n_boot=th.n_boot, alpha=th.alpha, seed=th.seed)
    return {
        "bd_rate": iv.mean,
        "bd_rate_low": iv.low,
        "bd_rate_high": iv.high,
        "bd_rate_refs": iv.n,
        "bd_rate_reason": why,
    }


def _versions(s: pd.Series) -> str:
    return ", ".join(sorted({str(v) for v in s if plain(v) is not None})) or ""


def _metric_stats(g: pd.DataFrame, th: Thresholds, metrics: Sequence[str]) -> dict:
    """Per further metric: the mean of both sides and the change with its interval (the same draws as the
    classic statistics: same references, same seed)."""
    if not metrics:
        return {}
    ivs = cluster_bootstrap(
        g[[f"d_{m}" for m in metrics]].to_numpy(dtype=np.float64),
        g["ref_id"].to_numpy(),
        n_boot=th.n_boot,
        alpha=th.alpha,
        seed=th.seed,
    )
    out: dict = {}
    for m, iv in zip(metrics, ivs, strict=True):
        out[f"baseline_{m}"] = float(g[f"baseline_{m}"].mean())
        out[f"candidate_{m}"] = float(g[f"candidate_{m}"].mean())
        out[f"d_{m}"], out[f"d_{m}_low"], out[f"d_{m}_high"] = iv.mean, iv.low, iv.high
        out[f"{m}_triplets"] = iv.n
    return out


def _stat_row(codec: str, setting: str, g: pd.DataFrame, th: Thresholds, metrics: Sequence[str] = ()) -> dict:
    ivs = cluster_bootstrap(
        g[list(STATS)].to_numpy(dtype=np.float64),
        g["ref_id"].to_numpy(),
        n_boot=th.n_boot,
        alpha=th.alpha,
        seed=th.seed,
    )
    p, d_psnr, d_ms, rate = ivs
    return {
        "codec": codec,
        "setting": setting,
        "baseline_codec_version": _versions(g["baseline_codec_version"]),
        "candidate_codec_version": _versions(g["candidate_codec_version"]),
        "refs": int(g["ref_id"].nunique()),
        "triplets": len(g),
        "baseline_bpp": float(g["baseline_bpp"].mean()),
        "candidate_bpp": float(g["candidate_bpp"].mean()),
        "baseline_psnr": float(g["baseline_psnr"].clip(upper=PSNR_CAP).mean()),
        "candidate_psnr": float(g["candidate_psnr"].clip(upper=PSNR_CAP).mean()),
        "baseline_ms_ssim": float(g["baseline_ms_ssim"].mean()),
        "candidate_ms_ssim": float(g["candidate_ms_ssim"].mean()),
        "p": p.mean,
        "p_low": p.low,
        "p_high": p.high,
        "d_psnr": d_psnr.mean,
        "d_psnr_low": d_psnr.low,
        "d_psnr_high": d_psnr.high,
        "d_ms_ssim": d_ms.mean,
        "d_ms_ssim_low": d_ms.low,
        "d_ms_ssim_high": d_ms.high,
        "ms_ssim_triplets": d_ms.n,
        "rate_change": math.expm1(rate.mean) if rate.n else np.nan,
        "rate_change_low": math.expm1(rate.low) if rate.n else np.nan,
        "rate_change_high": math.expm1(rate.high) if rate.n else np.nan,
        **_metric_stats(g, th, metrics),
    }


def _judge(row: dict, th: Thresholds, metrics: Sequence[str] = ()) -> dict:
    fired = {name: msg for name, c in criteria_for(metrics).items() if (msg := c.check(row, th))}
    row["reasons"] = [f"{name}: {msg}" for name, msg in fired.items() if name in th.gate]
    row["warnings"] = [f"{name}: {msg}" for name, msg in fired.items() if name not in th.gate]
    row["regression"] = bool(row["reasons"])
    return row


def summarize(
    scored: pd.DataFrame, th: Thresholds, metrics: Sequence[str] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-codec and per-(codec, setting) rows with intervals and the criteria's verdicts; ``metrics`` are the
    further metrics judged (columns ``d_<m>`` of ``scored``, :func:`pipeline.regress.criteria.metric_criteria`)."""
    codec_rows, setting_rows = [], []
    metrics = tuple(metrics)
    for codec, g in scored.groupby("codec", sort=True):
        row = _stat_row(str(codec), ALL_SETTINGS, g, th, metrics)
        if g["setting"].nunique() >= bdrate.MIN_POINTS:
            row.update(_bd_rate_row(g, th))
        else:
            row.update(
                {
                    "bd_rate": np.nan,
                    "bd_rate_low": np.nan,
                    "bd_rate_high": np.nan,
                    "bd_rate_refs": 0,
                    "bd_rate_reason": f"fewer than {bdrate.MIN_POINTS} settings",
                }
            )
        codec_rows.append(_judge(row, th, metrics))
        for setting, gs in g.groupby("setting", sort=False):
            setting_rows.append(_judge(_stat_row(str(codec), str(setting), gs, th, metrics), th, metrics))
    columns = list(codec_rows[0]) if codec_rows else ["codec", "setting", "regression", "reasons", "warnings"]
    codecs = pd.DataFrame(codec_rows, columns=columns)
    settings = pd.DataFrame(setting_rows)
    if len(settings):
        settings = _sort_settings(settings)
    return codecs, settings


def _sort_settings(df: pd.DataFrame) -> pd.DataFrame:
    """Settings in a natural order within a codec: by the baseline's bpp (low to high)."""
    return df.sort_values(["codec", "baseline_bpp", "setting"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------- verdict


@dataclass
class Report:
    """The verdict with everything it rests on; :meth:`to_dict` is ``regress.json``, :meth:`to_markdown` the
    summary (both rendered by :mod:`pipeline.regress.render`)."""

    thresholds: Thresholds
    codecs: pd.DataFrame
    settings: pd.DataFrame
    matching: Matching
    unscored: pd.DataFrame
    context: dict = field(
        default_factory=dict
    )  # baseline/candidate {uri, run_id}, model, checkpoint, output...
    notes: list[str] = field(default_factory=list)
    metrics: tuple[str, ...] = ()  # the further metrics judged, each a criterion (criteria.metric_criteria)

    @property
    def missing_reason(self) -> str | None:
        n = len(self.matching.only_baseline)
        if self.thresholds.fail_on_missing and n:
            return f"missing: {n} image(s) of the baseline are not in the candidate"
        return None

    @property
    def regression(self) -> bool:
        rows = [self.codecs, self.settings]
        return bool(self.missing_reason) or any(len(d) and d["regression"].any() for d in rows)

    @property
    def verdict(self) -> str:
        return "regression" if self.regression else "pass"

    @property
    def exit_code(self) -> int:
        return 1 if self.regression else 0

    def regressions(self) -> list[dict]:
        """The failing rows: codec, setting (``(all)`` for the codec as a whole) and the reasons."""
        out = []
        for df in (self.codecs, self.settings):
            for r in df[df["regression"]].to_dict("records") if len(df) else []:
                out.append({"codec": r["codec"], "setting": r["setting"], "reasons": r["reasons"]})
        if self.missing_reason:
            out.append({"codec": None, "setting": None, "reasons": [self.missing_reason]})
        return out

    def counts(self) -> dict:
        return {
            **self.matching.counts(),
            "scored": int(self.codecs["triplets"].sum()) if len(self.codecs) else 0,
            "unscored": len(self.unscored),
            "regressions": len(self.regressions()),
        }

    def to_dict(self) -> dict:
        m = self.matching
        limit = 1000
        return jsonable(
            {
                "verdict": self.verdict,
                "regression": self.regression,
                "exit_code": self.exit_code,
                **self.context,
                "thresholds": self._thresholds_doc(),
                "criteria": self._criteria_doc(),
                "counts": self.counts(),
                "regressions": self.regressions(),
                "codecs": self.codecs.to_dict("records"),
                "settings": self.settings.to_dict("records"),
                "coverage": {
                    "only_baseline": m.only_baseline.head(limit).to_dict("records"),
                    "only_candidate": m.only_candidate.head(limit).to_dict("records"),
                    "ambiguous": m.ambiguous.head(limit).to_dict("records"),
                    "ref_mismatch": m.ref_mismatch.head(limit).to_dict("records"),
                    "unscored": self.unscored.head(limit).to_dict("records"),
                    "truncated_at": limit,
                },
                "notes": self.notes,
            }
        )

    def _thresholds_doc(self) -> dict:
        th = self.thresholds
        doc = {k: v for k, v in asdict(th).items() if k != "metric_margins"}
        doc["p_threshold"] = th.p_threshold
        if self.metrics:
            doc["metric_margins"] = {m: th.metric_margin(m) for m in self.metrics}
        return doc

    def _criteria_doc(self) -> dict:
        out = {}
        for n, c in criteria_for(self.metrics).items():
            out[n] = {"description": c.description, "gated": n in self.thresholds.gate}
            if n in self.metrics:
                info = get_metric(n)
                out[n].update(
                    unit=info.unit,
                    higher_is_better=info.higher_is_better,
                    margin=self.thresholds.metric_margin(n),
                )
        return out

    def to_markdown(self, max_listed: int = 20) -> str:
        from pipeline.regress.render import markdown

        return markdown(self, max_listed)


def decide(
    scored: pd.DataFrame,
    matching: Matching,
    unscored: pd.DataFrame,
    th: Thresholds,
    *,
    context: dict | None = None,
    notes: Sequence[str] = (),
    metrics: Sequence[str] = (),
) -> Report:
    """Statistics and verdict of the scored triplets (see the module docstring); ``metrics``: the further metrics
    judged, each with ``d_<m>`` in ``scored`` (:func:`pipeline.regress.match.triplets` with the same names)."""
    codecs, settings = summarize(scored, th, metrics)
    return Report(th, codecs, settings, matching, unscored, dict(context or {}), list(notes), tuple(metrics))


__all__ = ["ALL_SETTINGS", "Report", "decide", "summarize"]
