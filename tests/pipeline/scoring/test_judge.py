"""The report's judge: a metric's pairwise preferences in place of PRFNet's p_a (pipeline.scoring.judge)."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.scoring.judge import judge_pairs


def frames():
    images = pd.DataFrame(
        {
            "ref_id": ["r"] * 4,
            "dist_id": ["a", "b", "c", "d"],
            "psnr": [30.0, 35.0, 35.0, None],
            "butteraugli": [4.0, 2.0, 3.0, 1.0],
        }
    )
    pairs = pd.DataFrame({"ref_id": ["r"] * 4, "a_id": ["a", "b", "b", "a"], "b_id": ["b", "c", "a", "d"],
                          "p_a": [0.9, 0.9, 0.9, 0.9]})  # fmt: skip
    return images, pairs


def test_prfnet_keeps_the_pairs_and_a_metric_replaces_p_a_by_its_direction():
    images, pairs = frames()
    assert judge_pairs(images, pairs, "prfnet") is pairs
    by_psnr = judge_pairs(images, pairs, "psnr")
    assert by_psnr["p_a"].tolist() == [0.0, 0.5, 1.0]  # the pair with a missing PSNR is left out
    by_butteraugli = judge_pairs(images, pairs, "butteraugli")  # lower is better
    assert by_butteraugli["p_a"].tolist() == [0.0, 1.0, 1.0, 0.0]


def test_unknown_judge_or_missing_metric():
    images, pairs = frames()
    with pytest.raises(ValueError, match="prfnet or a metric"):
        judge_pairs(images, pairs, "vmaf")
    with pytest.raises(ValueError, match="no ms_ssim values"):
        judge_pairs(images, pairs, "ms_ssim")
