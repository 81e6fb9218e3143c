"""Known-order 2AFC triplets from the bundled sample photos: training data that needs no human raters.

``synthetic:samples`` (or ``synthetic:samples:astronaut,coffee?sides=256,384``) builds, for each selected photo and
each size in ``sides`` (the photo scaled down so its longer side is at most that many pixels):

* codec ladders: the photo encoded and decoded by one codec at several settings (:data:`CODEC_LADDERS`, through
  :mod:`pipeline.codecs`); of two settings of one codec, the higher-quality one is closer to the original;
* classic distortions at several strengths (:data:`CLASSIC_LADDERS`): Gaussian blur (sigma in pixels), Gaussian
  noise (sigma in 8-bit levels, seeded) and uniform colour quantisation (levels per channel); the weaker one is
  closer.

Every pair of rungs of one ladder is a triplet (O, A, B) with a hard label: ``label = 1`` when A is the milder
one. A and B are put in a seeded random order, so about half the labels are 0. Pairs across ladders are not made:
their order is not known without raters. ``ref_id`` is the photo's name, so a split by reference keeps every size
of one photo on one side.

Output under a folder: ``images/<photo>-<side>/*.png`` and ``triplets.parquet`` (relative URIs; columns
``ref_id, ref_uri, a_uri, b_uri, label, family, a_setting, b_setting, a_bpp, b_bpp``), plus ``synthetic.json``
describing what was made. Generating again with the same selection reuses the folder. Everything is deterministic:
fixed settings, seeded noise, single-threaded encoders.
"""

from __future__ import annotations

import itertools
import json
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from urllib.parse import parse_qs

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.image import decoding
from pipeline.image.samples import SCHEME as SAMPLES_SCHEME
from pipeline.image.samples import SampleError, load_sample, parse_samples_uri
from pipeline.io import storage, tables
from pipeline.io.jsonable import jsonable

SCHEME = "synthetic:"
DEFAULT_SIDES = (256, 384, 512)
FORMAT = 1

# codec -> settings as a spec body (pipeline.codecs syntax); which end is better comes from the codec's metadata
CODEC_LADDERS: dict[str, str] = {
    "jpeg": "q=10,20,35,50,70,90",
    "webp": "q=5,20,35,50,70,90",
    "avif": "q=10,25,40,55,70,85",
    "jxl": "d=1,2,3,5,8,12",
}
# family -> strengths, mildest first
CLASSIC_LADDERS: dict[str, tuple[float, ...]] = {
    "blur": (0.4, 0.7, 1.0, 1.6, 2.5, 4.0),  # Gaussian sigma, pixels
    "noise": (2.0, 4.0, 7.0, 11.0, 16.0, 24.0),  # Gaussian sigma, 8-bit levels
    "quantise": (48, 32, 20, 12, 8, 5),  # levels per channel
}


class SyntheticError(ValueError):
    """A ``synthetic:`` selection that cannot be used."""


def is_synthetic_uri(uri: str) -> bool:
    return uri.strip().lower().startswith(SCHEME)


@dataclass(frozen=True)
class SyntheticSpec:
    """What a ``synthetic:`` URI selects: photos, sizes, and the seed of the noise and of the A/B order."""

    photos: tuple[str, ...]
    sides: tuple[int, ...] = DEFAULT_SIDES
    seed: int = 0

    @property
    def uri(self) -> str:
        return (
            f"{SCHEME}{SAMPLES_SCHEME}{','.join(self.photos)}?sides={','.join(map(str, self.sides))}"
            f"&seed={self.seed}"
        )


def parse(uri: str) -> SyntheticSpec:
    """``synthetic:samples[:names][?sides=256,384&seed=0]`` -> :class:`SyntheticSpec`."""
    body = uri.strip()[len(SCHEME) :]
    selection, _, query = body.partition("?")
    if selection.lower() == SAMPLES_SCHEME.rstrip(":"):
        selection = SAMPLES_SCHEME
    if not selection.lower().startswith(SAMPLES_SCHEME):
        raise SyntheticError(
            f"{uri!r}: expected synthetic:samples[:names][?sides=256,384,512&seed=0] (the bundled photos)"
        )
    options = parse_qs(query, keep_blank_values=True) if query else {}
    unknown = set(options) - {"sides", "seed"}
    if unknown:
        raise SyntheticError(f"unknown synthetic option(s) {sorted(unknown)}; the options are sides and seed")
    try:
        names, _ = parse_samples_uri(selection)
        sides = (
            tuple(int(s) for s in options["sides"][-1].split(",") if s.strip())
            if "sides" in options
            else None
        )
        seed = int(options["seed"][-1]) if "seed" in options else 0
    except SampleError as e:
        raise SyntheticError(str(e)) from None
    except ValueError:
        raise SyntheticError(f"{uri!r}: sides and seed take whole numbers") from None
    if sides is not None and (not sides or min(sides) < 64):
        raise SyntheticError(f"{uri!r}: sides must be whole numbers of at least 64 pixels")
    return SyntheticSpec(photos=tuple(names), sides=sides or DEFAULT_SIDES, seed=seed)


# --------------------------------------------------------------------------------------------- distortions


def blur(rgb: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    out = gaussian_filter(rgb.astype(np.float32), sigma=(sigma, sigma, 0), mode="reflect")
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def noise(rgb: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    out = rgb.astype(np.float32) + rng.normal(0.0, sigma, size=rgb.shape).astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def quantise(rgb: np.ndarray, levels: int) -> np.ndarray:
    step = 255.0 / (levels - 1)
    return np.clip(np.rint(np.rint(rgb / step) * step), 0, 255).astype(np.uint8)


@dataclass
class Rung:
    """One distorted image: its family, setting text, rank (0 = mildest), pixels and bitstream size."""

    family: str
    setting: str
    rank: int
    rgb: np.ndarray
    nbytes: int | None = None


def codec_rungs(rgb: np.ndarray) -> list[Rung]:
    """Each codec ladder, decoded; ranks from the codec's own quality direction."""
    from pipeline.codecs import get_codec, parse_inline

    out = []
    for name, body in CODEC_LADDERS.items():
        codec = get_codec(name)
        settings = parse_inline(f"{name}:{body}")
        best_first = sorted(settings, key=lambda s: s.value, reverse=codec.higher_is_better_quality)
        for rank, s in enumerate(best_first):
            data = codec.encode(rgb, s.value)
            out.append(Rung(name, s.text, rank, codec.decode(data), len(data)))
    return out


def classic_rungs(rgb: np.ndarray, rng: np.random.Generator) -> list[Rung]:
    makers: dict[str, Callable[[float], np.ndarray]] = {
        "blur": lambda v: blur(rgb, v),
        "noise": lambda v: noise(rgb, v, rng),
        "quantise": lambda v: quantise(rgb, int(v)),
    }
    knob = {"blur": "sigma", "noise": "sigma", "quantise": "levels"}
    return [
        Rung(family, f"{knob[family]}={v:g}", rank, makers[family](v))
        for family, values in CLASSIC_LADDERS.items()
        for rank, v in enumerate(values)
    ]


# --------------------------------------------------------------------------------------------- the set


def _variants(photo: str, sides: tuple[int, ...]) -> list[tuple[int, np.ndarray]]:
    """(side, pixels) per requested size; a size that gives the same pixels as a smaller one is left out."""
    out, shapes = [], set()
    for side in sorted(sides):
        rgb = load_sample(photo, max_side=side)
        if rgb.shape not in shapes:
            shapes.add(rgb.shape)
            out.append((side, rgb))
    return out


def reference_triplets(photo: str, side: int, rgb: np.ndarray, folder: str, seed: int) -> list[dict]:
    """Write one sized photo and its rungs under ``folder``; return its triplet rows (URIs relative to folder)."""
    name = f"{photo}-{side}"
    rng = np.random.default_rng([seed, zlib.crc32(photo.encode()), side])
    rungs = codec_rungs(rgb) + classic_rungs(rgb, rng)
    ref_rel = f"images/{name}/reference.png"
    storage.write_bytes(storage.join(folder, ref_rel), decoding.encode_png(rgb))
    rel = {}
    for r in rungs:
        rel[id(r)] = f"images/{name}/{r.family}-{r.setting.replace('=', '')}.png"
        storage.write_bytes(storage.join(folder, rel[id(r)]), decoding.encode_png(r.rgb))
    pixels = rgb.shape[0] * rgb.shape[1]
    rows = []
    for family in dict.fromkeys(r.family for r in rungs):
        ladder = [r for r in rungs if r.family == family]
        for x, y in itertools.combinations(ladder, 2):
            a, b = (x, y) if rng.random() < 0.5 else (y, x)
            rows.append(
                {
                    "ref_id": photo,
                    "ref_uri": ref_rel,
                    "a_uri": rel[id(a)],
                    "b_uri": rel[id(b)],
                    "label": 1.0 if a.rank < b.rank else 0.0,
                    "family": family,
                    "a_setting": a.setting,
                    "b_setting": b.setting,
                    "a_bpp": None if a.nbytes is None else a.nbytes * 8.0 / pixels,
                    "b_bpp": None if b.nbytes is None else b.nbytes * 8.0 / pixels,
                    "side": side,
                }
            )
    return rows


def describe(spec: SyntheticSpec) -> str:
    codecs = ", ".join(f"{k} {v}" for k, v in CODEC_LADDERS.items())
    classic = ", ".join(f"{k} {', '.join(f'{v:g}' for v in vs)}" for k, vs in CLASSIC_LADDERS.items())
    return (
        f"known-order triplets from the bundled sample photos {', '.join(spec.photos)} at longest sides "
        f"{', '.join(map(str, spec.sides))} px: every pair of settings of one codec ({codecs}; the higher-quality "
        f"setting is closer) and every pair of strengths of one classic distortion ({classic}; blur and noise "
        "sigma, quantisation levels per channel; the milder one is closer); hard labels, no human raters"
    )


def generate(spec: SyntheticSpec, folder: str, *, log: Callable[[str], None] = print) -> str:
    """Build the set under ``folder`` (or reuse it when it was built from the same spec); return the table URI."""
    table_uri = storage.join(folder, "triplets.parquet")
    info_uri = storage.join(folder, "synthetic.json")
    info = {
        "format": FORMAT,
        **asdict(spec),
        "uri": spec.uri,
        "description": describe(spec),
        "codec_ladders": CODEC_LADDERS,
        "classic_ladders": CLASSIC_LADDERS,
    }
    info = jsonable(info)  # as it reads back from JSON (tuples as lists)
    try:
        if json.loads(storage.read_text(info_uri)) == info and storage.exists(table_uri):
            return table_uri
    except FileNotFoundError:
        pass
    rows: list[dict] = []
    for photo in spec.photos:
        for side, rgb in _variants(photo, spec.sides):
            rows += reference_triplets(photo, side, rgb, folder, spec.seed)
        log(f"synthetic triplets: {photo} done ({len(rows)} triplets so far)")
    df = pd.DataFrame(rows)
    tables.write_parquet(table_uri, pa.Table.from_pandas(df, preserve_index=False))
    storage.write_text(info_uri, json.dumps(info, indent=2, sort_keys=True))
    return table_uri
