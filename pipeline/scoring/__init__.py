"""Scoring with PRFNet: the manifest and its reference groups, which pairs to compare, the CPU load stage (read,
check, measure, tile), :class:`~pipeline.scoring.scorer.PairScorer` (one model replica, features cached per image),
the results tables of a scored group, and the Ray Data driver that runs load -> score -> write. The one scoring
path of prfeval: evaluate, regress and clic all go through :func:`pipeline.scoring.driver.run_groups`.
"""
