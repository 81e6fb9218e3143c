"""Synthetic results tables with known codec strengths, written as real results folders when a test needs Parquet.

Each reference image is encoded by every codec at the same settings. Settings ``k = 0..n-1`` sit at
``bpp = base_ref * 2**k * rate_factor[codec]``; quality rises with log-rate, so every curve is strictly monotonic
and BD-rates have known signs. Pairs are every unordered pair of a reference's images, scored
``p_a = σ(s_a - s_b)`` from known codec strengths plus a per-reference content effect and noise.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

from pipeline.io import schemas
from pipeline.scoring import results


@dataclass
class Synthetic:
    images: pd.DataFrame
    pairs: pd.DataFrame
    strengths: dict[str, float]

    def write(self, uri: str) -> str:
        """Write as a results folder (one Parquet per reference group, as `prfeval evaluate` does)."""
        for ref_id, images in self.images.groupby("ref_id"):
            pairs = self.pairs[self.pairs["ref_id"] == ref_id]
            tables = {
                "images": schemas.conform(images.to_dict("records"), schemas.IMAGES),
                "pairs": schemas.conform(pairs.to_dict("records"), schemas.PAIRS),
                "errors": schemas.conform([], schemas.ERRORS),
            }
            results.write_group(uri, str(ref_id), tables)
        results.write_run(uri, {"run_id": "run-synthetic", "status": "finished", "model": "synthetic"})
        return uri


def make_results(
    strengths: dict[str, float],
    *,
    n_refs: int = 20,
    n_settings: int = 4,
    rate_factor: dict[str, float] | None = None,
    content_sd: float = 0.2,
    noise_sd: float = 0.05,
    versions: dict[str, list[str]] | None = None,
    seed: int = 0,
) -> Synthetic:
    """Synthetic ``images`` and ``pairs`` tables (declared columns plus ``a_/b_codec_version``)."""
    rng = np.random.default_rng(seed)
    rate_factor = rate_factor or {}
    versions = versions or {}
    image_rows, pair_rows = [], []
    for r in range(n_refs):
        ref_id = f"ref{r:02d}"
        base = 0.05 * (1 + 0.3 * rng.random())
        content = {c: rng.normal(0, content_sd) for c in strengths}
        rows = []
        for codec in strengths:
            for version in versions.get(codec, ["1.0"]):
                for k in range(n_settings):
                    bpp = base * 2.0**k * rate_factor.get(codec, 1.0)
                    quality = np.log2(bpp / base)
                    rows.append(
                        {
                            "run_id": "run-synthetic",
                            "ref_id": ref_id,
                            "dist_id": f"{ref_id}-{codec}-{version}-{k}",
                            "ref_uri": f"/nonexistent/{ref_id}.png",
                            "dist_uri": f"/nonexistent/{ref_id}-{codec}-{k}.png",
                            "codec": codec,
                            "codec_version": version,
                            "setting": f"q={k}",
                            "bytes": int(bpp * 64 * 64 / 8),
                            "width": 64,
                            "height": 64,
                            "bpp": bpp,
                            "psnr": 30.0 + 3.0 * quality + strengths[codec],
                            "psnr_y": 31.0 + 3.0 * quality + strengths[codec],
                            "ms_ssim": 1.0 - 0.1 * 2.0 ** (-quality) / (1 + strengths[codec] ** 2),
                            "prf_score": quality + strengths[codec],
                            "prf_win_rate": 0.5,
                            "n_pairs": 1,
                        }
                    )
        image_rows += rows
        for a, b in itertools.combinations(rows, 2):
            s_a = strengths[a["codec"]] + content[a["codec"]]
            s_b = strengths[b["codec"]] + content[b["codec"]]
            p = float(expit(s_a - s_b + rng.normal(0, noise_sd)))
            pair_rows.append(
                {
                    "run_id": "run-synthetic",
                    "ref_id": ref_id,
                    "a_id": a["dist_id"],
                    "b_id": b["dist_id"],
                    "p_a": p,
                    "logit": float(np.log(p / (1 - p))),
                    "model": "synthetic",
                    "checkpoint_sha256": "0" * 64,
                    "n_patches": 1,
                    "a_codec": a["codec"],
                    "b_codec": b["codec"],
                    "a_setting": a["setting"],
                    "b_setting": b["setting"],
                    "a_bpp": a["bpp"],
                    "b_bpp": b["bpp"],
                    "a_codec_version": a["codec_version"],
                    "b_codec_version": b["codec_version"],
                }
            )
    return Synthetic(pd.DataFrame(image_rows), pd.DataFrame(pair_rows), dict(strengths))


@pytest.fixture
def make():
    """The synthetic-results factory, :func:`make_results`."""
    return make_results


@pytest.fixture(scope="module")
def synthetic() -> Synthetic:
    """Four codecs of clearly different strengths, 20 references, 4 settings each (shared: do not modify)."""
    return make_results({"jpeg": 0.0, "webp": 0.4, "avif": 0.9, "jxl": -0.5})
