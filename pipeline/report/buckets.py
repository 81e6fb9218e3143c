"""Bits-per-pixel buckets: which distorted images are compared with each other in a leaderboard.

Codecs are ranked within a bucket from pairs whose two images both fall in it; comparing a codec at 0.1 bpp with
another at 1 bpp says more about the rates than about the codecs. A bucket specification is one of

``quantiles:N`` (the default, ``N = 3``)
    ``N`` buckets holding about equally many images: edges at the ``k / N`` quantiles of the images' bpp, the
    first and last edge the smallest and largest bpp, so every image lands in exactly one bucket.
``clic`` / ``clic:TOL``
    The CLIC image-track targets 0.075, 0.15 and 0.3 bpp. Plain ``clic`` gives each target the images within a
    factor √2 of it (the targets are a factor 2 apart, so the buckets tile 0.053–0.424 bpp without gaps);
    ``clic:TOL`` keeps the images within a relative tolerance ``TOL`` of a target, e.g. ``clic:0.1`` is
    0.0675–0.0825 bpp around 0.075.
``E0,E1,...,En``
    Explicit, increasing edges (``inf`` allowed): bucket ``k`` is ``[E(k), E(k+1))``, the last one closed.

Images outside every bucket take part in no leaderboard (they are counted in the report); BD-rate and the plots
use all images.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

CLIC_TARGETS = (0.075, 0.15, 0.3)
DEFAULT_SPEC = "quantiles:3"


class BucketSpecError(ValueError):
    """A bucket specification that cannot be parsed or does not fit the data."""


@dataclass(frozen=True)
class Bucket:
    """A bpp interval ``[low, high)`` (``[low, high]`` when ``closed``), with a display name."""

    name: str
    low: float
    high: float
    closed: bool = False
    target: float | None = None

    def contains(self, bpp: np.ndarray) -> np.ndarray:
        bpp = np.asarray(bpp, dtype=np.float64)
        upper = bpp <= self.high if self.closed else bpp < self.high
        return (bpp >= self.low) & upper

    @property
    def label(self) -> str:
        span = f"{_fmt(self.low)}–{_fmt(self.high)} bpp"
        return f"{span} (target {_fmt(self.target)})" if self.target is not None else span


def _fmt(x: float) -> str:
    return "∞" if math.isinf(x) else f"{x:.3g}"


def parse(spec: str, bpp: np.ndarray | pd.Series) -> list[Bucket]:
    """The buckets of ``spec`` for images of these ``bpp`` values (quantile edges depend on the data)."""
    spec = spec.strip()
    bpp = np.asarray(bpp, dtype=np.float64)
    bpp = bpp[np.isfinite(bpp)]
    kind, _, arg = spec.partition(":")
    if kind == "quantiles":
        return _quantiles(_int(arg or "3", spec), bpp)
    if kind == "clic":
        return _clic(None if not arg else _float(arg, spec))
    return _edges([_float(e, spec) for e in spec.split(",") if e.strip()], spec)


def _int(text: str, spec: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise BucketSpecError(f"bucket spec {spec!r}: {text!r} is not a whole number") from None
    if n < 1:
        raise BucketSpecError(f"bucket spec {spec!r}: need at least one bucket")
    return n


def _float(text: str, spec: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BucketSpecError(
            f"bucket spec {spec!r}: {text.strip()!r} is not a number "
            "(expected comma-separated edges, 'clic', 'clic:TOL' or 'quantiles:N')"
        ) from None


def _edges(edges: list[float], spec: str) -> list[Bucket]:
    if len(edges) < 2:
        raise BucketSpecError(f"bucket spec {spec!r}: need at least two edges")
    if any(math.isnan(e) for e in edges) or not all(b > a for a, b in itertools.pairwise(edges)):
        raise BucketSpecError(f"bucket spec {spec!r}: edges must be strictly increasing numbers")
    n = len(edges) - 1
    return [
        Bucket(f"b{k + 1}", edges[k], edges[k + 1], closed=k == n - 1 and math.isfinite(edges[k + 1]))
        for k in range(n)
    ]


def _clic(tolerance: float | None) -> list[Bucket]:
    if tolerance is None:
        factor = math.sqrt(2.0)
        return [Bucket(f"clic-{t}", t / factor, t * factor, target=t) for t in CLIC_TARGETS]
    if not 0 < tolerance < 1:
        raise BucketSpecError(f"clic tolerance must be in (0, 1), got {tolerance}")
    out = [
        Bucket(f"clic-{t}", t * (1 - tolerance), t * (1 + tolerance), closed=True, target=t)
        for t in CLIC_TARGETS
    ]
    for a, b in itertools.pairwise(out):
        if a.high >= b.low:
            raise BucketSpecError(f"clic tolerance {tolerance} makes neighbouring targets overlap")
    return out


def _quantiles(n: int, bpp: np.ndarray) -> list[Bucket]:
    if bpp.size == 0:
        return []
    edges = np.unique(np.quantile(bpp, np.linspace(0.0, 1.0, n + 1)))
    if edges.size == 1:  # every image at the same rate
        return [Bucket("q1", float(edges[0]), float(edges[0]), closed=True)]
    last = edges.size - 2
    return [
        Bucket(f"q{k + 1}", float(edges[k]), float(edges[k + 1]), closed=k == last)
        for k in range(edges.size - 1)
    ]


def assign(bpp: np.ndarray | pd.Series, buckets: list[Bucket]) -> np.ndarray:
    """Index of each value's bucket, ``-1`` outside all of them (buckets do not overlap)."""
    bpp = np.asarray(bpp, dtype=np.float64)
    out = np.full(bpp.shape, -1, dtype=np.int64)
    for k, bucket in enumerate(buckets):
        out[(out < 0) & bucket.contains(bpp)] = k
    return out
