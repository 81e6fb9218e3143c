"""Statistics for leaderboards and regression gates, pure numpy/pandas/scipy and no Ray: the one cluster bootstrap
over reference images (:mod:`~pipeline.stats.bootstrap`), Bradley–Terry ratings from soft pairwise outcomes
(:mod:`~pipeline.stats.bradley_terry`) and Bjøntegaard delta rates (:mod:`~pipeline.stats.bdrate`)."""
