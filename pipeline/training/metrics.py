"""Held-out metrics of a 2AFC model: accuracy, the 2AFC score, cross-entropy; per family and per bpp bucket.

Inputs are one row per triplet with ``label`` (P(A closer) from the data, hard or soft) and ``logit`` (the model's,
``p_a = sigmoid(logit)``); optionally ``family``, ``a_bpp`` and ``b_bpp``.

* ``accuracy``: the model's choice (A when ``p_a > 0.5``) agrees with the label's majority; triplets whose label
  is exactly 0.5 have no majority and are left out; a model tie (``p_a == 0.5``) counts half.
* ``two_afc``: BAPPS's 2AFC score, the fraction of raters who agree with the model's choice
  (``label`` when it chooses A, ``1 - label`` when it chooses B, 0.5 for a tie); equals accuracy for hard labels.
* ``bce``: mean binary cross-entropy of ``p_a`` against the (soft) label, the training loss.
* per bpp bucket: triplets whose two rates are known, bucketed by the mean bpp of A and B
  (:mod:`pipeline.report.buckets` syntax, fixed edges by default so epochs and runs compare).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from pipeline.report import buckets as bucket_spec

DEFAULT_BUCKETS = "0,0.25,0.5,1,2,inf"


def _choice(logit: np.ndarray) -> np.ndarray:
    """1 for A, 0 for B, 0.5 for an exact tie."""
    return np.where(logit > 0, 1.0, np.where(logit < 0, 0.0, 0.5))


def _core(label: np.ndarray, logit: np.ndarray) -> dict:
    choice = _choice(logit)
    decided = label != 0.5
    majority = (label > 0.5).astype(np.float64)
    agree = np.where(choice == 0.5, 0.5, (choice == majority).astype(np.float64))
    two_afc = np.where(choice == 0.5, 0.5, choice * label + (1 - choice) * (1 - label))
    bce = np.maximum(logit, 0) - logit * label + np.log1p(np.exp(-np.abs(logit)))
    return {
        "n": len(label),
        "accuracy": float(agree[decided].mean()) if decided.any() else None,
        "two_afc": float(two_afc.mean()) if len(label) else None,
        "bce": float(bce.mean()) if len(label) else None,
    }


def summarize(frame: pd.DataFrame, *, buckets: str = DEFAULT_BUCKETS) -> dict:
    """Overall, per-family and per-bpp-bucket metrics of scored triplets (rows with a NaN logit are left out)."""
    frame = frame[np.isfinite(frame["logit"].to_numpy(dtype=np.float64))]
    label = frame["label"].to_numpy(dtype=np.float64)
    logit = frame["logit"].to_numpy(dtype=np.float64)
    out = _core(label, logit)
    families = frame["family"].fillna("").astype(str) if "family" in frame.columns else None
    out["per_family"] = {}
    if families is not None and (families != "").any():
        for fam in sorted(families.unique()):
            sel = (families == fam).to_numpy()
            out["per_family"][fam or "unknown"] = _core(label[sel], logit[sel])
    out["per_bpp"] = []
    if {"a_bpp", "b_bpp"} <= set(frame.columns):
        bpp = (frame["a_bpp"].to_numpy(dtype=np.float64) + frame["b_bpp"].to_numpy(dtype=np.float64)) / 2
        known = np.isfinite(bpp)
        if known.any():
            for b in bucket_spec.parse(buckets, bpp[known]):
                sel = known & b.contains(np.where(known, bpp, -1.0))
                if sel.any():
                    high = None if math.isinf(b.high) else b.high
                    out["per_bpp"].append(
                        {"bucket": b.label, "low": b.low, "high": high, **_core(label[sel], logit[sel])}
                    )
    return out


def one_line(m: dict) -> str:
    """``acc 0.912 (2AFC 0.912, bce 0.231) on 250``: for progress lines."""
    acc = "n/a" if m.get("accuracy") is None else f"{m['accuracy']:.3f}"
    afc = "n/a" if m.get("two_afc") is None else f"{m['two_afc']:.3f}"
    bce = "n/a" if m.get("bce") is None else f"{m['bce']:.3f}"
    return f"acc {acc} (2AFC {afc}, bce {bce}) on {m.get('n', 0)}"


def table(m: dict) -> str:
    """Per-family and per-bucket lines under the overall one."""
    lines = [f"  overall          {one_line(m)}"]
    for fam, v in m.get("per_family", {}).items():
        lines.append(f"  {fam:<16} {one_line(v)}")
    for b in m.get("per_bpp", []):
        lines.append(f"  {b['bucket']:<16} {one_line(b)}")
    return "\n".join(lines)
