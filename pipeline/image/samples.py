"""Bundled sample photographs: real colour photos that ship with scikit-image and load without a network.

``--refs samples:`` selects all of them, ``samples:astronaut,coffee`` a subset, and ``?max_side=N`` scales each one
down (Lanczos) so its longer side is at most N pixels: ``samples:astronaut,coffee?max_side=256``.

Only photographs are listed (no drawings, no synthetic patterns, no greyscale), and only those in the scikit-image
distribution itself; the files fetched on demand by ``skimage.data`` need a network and are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

import numpy as np

from model.registry import Registry

SCHEME = "samples:"


@dataclass(frozen=True)
class Sample:
    """One bundled photo: the ``skimage.data`` function that loads it (and the item, for tuple loaders)."""

    name: str
    loader: str
    description: str
    item: int | None = None


class SampleError(ValueError):
    """A ``samples:`` selection naming a photo that is not bundled, or a malformed option."""


def _unknown(name: str, hint: str) -> str:
    return (
        f"no bundled sample photo '{name}'"
        + (f" ({hint})" if hint else "")
        + f"; available: {', '.join(SAMPLES)}"
    )


SAMPLES: Registry[Sample] = Registry("sample photo", error=SampleError, message=_unknown)
for _sample in (
    Sample("astronaut", "astronaut", "portrait of astronaut Eileen Collins (NASA), 512x512"),
    Sample("chelsea", "chelsea", "Chelsea the cat, 451x300"),
    Sample("coffee", "coffee", "a cup of coffee on a saucer, 600x400"),
    Sample("rocket", "rocket", "a Falcon 9 rocket launch, 640x427"),
    Sample("motorcycle", "stereo_motorcycle", "a motorcycle in a workshop (left stereo view), 741x500", 0),
    Sample("hubble_deep_field", "hubble_deep_field", "Hubble eXtreme Deep Field (NASA), 1000x872"),
    Sample("immunohistochemistry", "immunohistochemistry", "stained tissue under a microscope, 512x512"),
    Sample("retina", "retina", "photograph of a human retina (fundus), 1411x1411"),
):
    SAMPLES.add(_sample.name, _sample)
del _sample


def is_samples_uri(uri: str) -> bool:
    return uri.strip().lower().startswith(SCHEME)


def parse_samples_uri(uri: str) -> tuple[list[str], int | None]:
    """The names a ``samples:`` URI selects (all when none are given) and its ``max_side`` (None: full size)."""
    body = uri.strip()[len(SCHEME) :].lstrip("/")
    names_part, _, query = body.partition("?")
    max_side = None
    if query:
        options = parse_qs(query, keep_blank_values=True)
        unknown = set(options) - {"max_side"}
        if unknown:
            raise SampleError(f"unknown samples option(s) {sorted(unknown)}; the only option is max_side=N")
        try:
            max_side = int(options["max_side"][-1])
        except ValueError:
            raise SampleError(
                f"max_side must be a whole number of pixels, got {options['max_side'][-1]!r}"
            ) from None
        if max_side < 8:
            raise SampleError(f"max_side must be at least 8 pixels, got {max_side}")
    names = [n.strip() for n in names_part.split(",") if n.strip()]
    return ([SAMPLES.get(n).name for n in dict.fromkeys(names)] or list(SAMPLES)), max_side


def sample_uri(name: str, max_side: int | None = None) -> str:
    """The ``samples:`` URI of one photo (what the manifest records as its source)."""
    return f"{SCHEME}{name}" + (f"?max_side={max_side}" if max_side else "")


def load_sample(name: str, max_side: int | None = None) -> np.ndarray:
    """A bundled photo as an (H, W, 3) uint8 RGB array, scaled down to ``max_side`` when given."""
    import skimage.data

    sample = SAMPLES.get(name)
    data = getattr(skimage.data, sample.loader)()
    rgb = np.asarray(data[sample.item] if sample.item is not None else data)
    rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
    if max_side and max(rgb.shape[:2]) > max_side:
        from PIL import Image

        h, w = rgb.shape[:2]
        scale = max_side / max(h, w)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        rgb = np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
    return rgb
