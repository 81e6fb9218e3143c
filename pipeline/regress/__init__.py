"""`regress`, the pure part: is a candidate run worse than a baseline run? No Ray and no I/O here.

:mod:`jobs.regress` reads the two runs, and these modules do the rest: :mod:`~pipeline.regress.match` matches
their images on ``(ref_id, codec, setting)``, builds one scoring group of (reference, candidate output, baseline
output) triplets per reference and, once the groups are scored through the one scoring path
(:func:`pipeline.scoring.driver.score_groups`), reads the scored triplets back; :mod:`~pipeline.regress.summary`
turns them into statistics per codec and setting with intervals from the cluster bootstrap over references
(:mod:`pipeline.stats.bootstrap`) and a BD-rate, and judges every row against the criteria and thresholds of
:mod:`~pipeline.regress.criteria`; :mod:`~pipeline.regress.render` writes the verdict as ``regress.json`` and
``regress.md``. Every further metric the regress run measures (``--metrics``) is a criterion too, judged in the
direction and against the margin of its metadata. Each module's docstring specifies its part.
"""

from __future__ import annotations

from pipeline.regress.criteria import CRITERIA, Criterion, Thresholds, criteria_for, metric_criteria
from pipeline.regress.match import (
    BASELINE,
    CANDIDATE,
    INPUT_COLUMNS,
    KEY,
    PREFIX,
    PSNR_CAP,
    STATS,
    Matching,
    build_groups,
    match_runs,
    triplets,
)
from pipeline.regress.render import markdown, to_json
from pipeline.regress.summary import ALL_SETTINGS, Report, decide, summarize
from pipeline.stats.bootstrap import Interval, cluster_bootstrap

__all__ = [
    "ALL_SETTINGS",
    "BASELINE",
    "CANDIDATE",
    "CRITERIA",
    "INPUT_COLUMNS",
    "KEY",
    "PREFIX",
    "PSNR_CAP",
    "STATS",
    "Criterion",
    "Interval",
    "Matching",
    "Report",
    "Thresholds",
    "build_groups",
    "cluster_bootstrap",
    "criteria_for",
    "decide",
    "markdown",
    "match_runs",
    "metric_criteria",
    "summarize",
    "to_json",
    "triplets",
]
