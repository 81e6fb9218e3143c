"""People's answers: read a human two-alternative-forced-choice study (which of two distorted images is closer to
the original) into per-pair vote counts (:mod:`~pipeline.human.study`), check that regenerated images are the ones
the raters saw (:mod:`~pipeline.human.reproduce`), and measure how often a judge — PRFNet, a full-reference metric,
file size — agrees with the people, per answer and per method, with intervals from the cluster bootstrap over
originals (:mod:`~pipeline.human.agreement`). Pure pandas/numpy/scipy, no Ray."""
