"""A plug-in metric: the mean absolute difference of two 8-bit RGB images (lower is better)."""

import numpy as np

from pipeline.image.metrics import MetricInfo


def mean_abs_error(ref: np.ndarray, dist: np.ndarray) -> float:
    return float(np.mean(np.abs(ref.astype(np.float64) - dist.astype(np.float64))))


METRIC = MetricInfo(
    name="mean_abs_error",
    fn=mean_abs_error,
    higher_is_better=False,
    unit="",
    range=(0.0, 255.0),
    best=0.0,
    title="MAE",
    implementation="prfeval-plugin-metric",
    version="0.1.0",
    description="mean absolute difference over pixels and channels, 8-bit",
)
