"""Fixtures for command tests: small real photos with real codec distortions and a manifest describing them."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.io import storage


def photo(name: str, size: tuple[int, int]) -> np.ndarray:
    """A real photograph from scikit-image's bundled data, resized to (width, height)."""
    from skimage import data

    img = Image.fromarray(getattr(data, name)()).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    return np.asarray(img)


def encode(rgb: np.ndarray, fmt: str, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def decode_png(data: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format="PNG")
    return out.getvalue()


DISTORTIONS = [
    ("jpeg", "JPEG", 10),
    ("jpeg", "JPEG", 40),
    ("jpeg", "JPEG", 85),
    ("webp", "WEBP", 20),
    ("webp", "WEBP", 70),
]


def build_manifest(
    base: str, refs=(("astronaut", (200, 176)), ("chelsea", (150, 110)))
) -> tuple[str, pd.DataFrame]:
    """Write references, decoded JPEG/WebP distortions and a CSV manifest (relative URIs) under ``base``."""
    rows = []
    for ref_name, size in refs:
        ref = photo(ref_name, size)
        storage.write_bytes(
            storage.join(base, "refs", f"{ref_name}.png"), decode_png(encode(ref, "PNG", 100))
        )
        for codec, fmt, q in DISTORTIONS:
            bitstream = encode(ref, fmt, q)
            dist_id = f"{ref_name}-{codec}-q{q}"
            storage.write_bytes(storage.join(base, "dist", f"{dist_id}.png"), decode_png(bitstream))
            rows.append(
                {
                    "ref_id": ref_name,
                    "ref_uri": f"refs/{ref_name}.png",
                    "dist_id": dist_id,
                    "dist_uri": f"dist/{dist_id}.png",
                    "codec": codec,
                    "codec_version": "test",
                    "setting": f"q={q}",
                    "bytes": len(bitstream),
                    "team": "t1",
                }
            )
    df = pd.DataFrame(rows)
    uri = storage.join(base, "manifest.csv")
    storage.write_text(uri, df.to_csv(index=False))
    return uri, df


@pytest.fixture
def local_manifest(tmp_path):
    return build_manifest(str(tmp_path / "in"))


@pytest.fixture
def s3_manifest(s3):
    return build_manifest(s3.uri("in"))
