"""Small reference groups on disk for the scoring stages' unit tests (no Ray)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.io.records import DistortedImage, ReferenceGroup


def write_png(path, rgb: np.ndarray) -> str:
    Image.fromarray(rgb).save(path)
    return str(path)


@pytest.fixture
def corpus(tmp_path):
    """A 64x96 reference, three distorted versions of it (more noise each time) and one image of another size."""
    rng = np.random.default_rng(7)
    ref = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    uris = {"ref": write_png(tmp_path / "ref.png", ref)}
    for k in range(3):
        noise = rng.integers(-8 * (k + 1), 8 * (k + 1) + 1, ref.shape)
        uris[f"d{k}"] = write_png(tmp_path / f"d{k}.png", np.clip(ref + noise, 0, 255).astype(np.uint8))
    uris["small"] = write_png(tmp_path / "small.png", ref[:48, :80])
    return uris


@pytest.fixture
def make_group(corpus):
    """``make_group(names, uris=..., pairs=...)``: a group of the corpus's images named ``names`` (``uris`` adds or
    overrides locations), codecs alternating jpeg/webp, rates rising."""

    def make(names: list[str], *, uris: dict | None = None, pairs=None) -> ReferenceGroup:
        where = {**corpus, **(uris or {})}
        dists = [
            DistortedImage(
                dist_id=n,
                dist_uri=where[n],
                codec="jpeg" if i % 2 == 0 else "webp",
                setting=str(i),
                bytes=1000 * (i + 1),
                extras={"note": f"n{i}"},
            )
            for i, n in enumerate(names)
        ]
        return ReferenceGroup(ref_id="r1", ref_uri=where["ref"], dists=dists, pairs=pairs)

    return make
