"""Golden numbers: a fixed small corpus scored with the packaged checkpoint gives the same values as when recorded.

The corpus is the command tests' manifest (two scikit-image photos, real JPEG and WebP distortions); the values are
PSNR, PSNR-Y, MS-SSIM, bpp, ``prf_score`` per image and ``p_a`` per pair, compared to 1e-6. A change of internals
(stage layout, records, caching) must leave them alone. To record them again on purpose, after a change that is
meant to move them: ``PRFEVAL_REGEN_GOLDEN=1 pytest tests/jobs/test_golden.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from jobs import evaluate
from pipeline.scoring import results

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).resolve().parents[1] / "data" / "golden" / "evaluate.json"
IMAGE_COLS = ("bpp", "psnr", "psnr_y", "ms_ssim", "prf_score")


def _values(out: str) -> dict:
    images = results.read_table(out, "images").sort_values("dist_id")
    pairs = results.read_table(out, "pairs").sort_values(["a_id", "b_id"])
    return {
        "images": {
            r["dist_id"]: {c: (None if r[c] is None or r[c] != r[c] else float(r[c])) for c in IMAGE_COLS}
            for r in images.to_dict("records")
        },
        "pairs": {f"{r['a_id']}|{r['b_id']}": float(r["p_a"]) for r in pairs.to_dict("records")},
    }


def test_scores_match_the_recorded_golden_values(ray_local, tmp_path, local_manifest):
    manifest_uri, _ = local_manifest
    out = str(tmp_path / "out")
    assert evaluate.main(["--manifest", manifest_uri, "--output", out, "--no-progress"]) == 0
    got = _values(out)
    if os.environ.get("PRFEVAL_REGEN_GOLDEN"):
        GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
        pytest.skip("golden values recorded")
    want = json.loads(GOLDEN.read_text())
    assert sorted(got["images"]) == sorted(want["images"])
    assert sorted(got["pairs"]) == sorted(want["pairs"])
    for dist_id, cols in want["images"].items():
        for col, value in cols.items():
            if value is None:
                assert got["images"][dist_id][col] is None, (dist_id, col)
            else:
                assert got["images"][dist_id][col] == pytest.approx(value, abs=1e-6), (dist_id, col)
    keys = sorted(want["pairs"])
    assert np.allclose([got["pairs"][k] for k in keys], [want["pairs"][k] for k in keys], atol=1e-6, rtol=0)
