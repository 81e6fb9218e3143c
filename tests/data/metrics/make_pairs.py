"""Regenerate the SSIMULACRA2 / Butteraugli reference pairs of this folder (run once; the outputs are committed).

Each pair is a 128 x 128 crop of a scikit-image photo (the reference) and the same crop after a JPEG round trip
through Pillow at one quality (the distorted image), both stored as 8-bit RGB PNG. ``reference_scores.json``
records, per pair, the score of the original SSIMULACRA2 tool (``ssimulacra2`` of cloudinary/ssimulacra2, built
from source; it prints "SSIMULACRA 2.1") and both outputs of ``butteraugli_main --pnorm 3`` (Debian
``libjxl-devtools``): the max norm and the 3-norm.

    python tests/data/metrics/make_pairs.py /path/to/ssimulacra2
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

HERE = Path(__file__).parent
# (photo, top, left, JPEG quality)
PAIRS = (
    ("astronaut", 40, 180, 10),
    ("coffee", 120, 200, 30),
    ("chelsea", 60, 120, 50),
    ("rocket", 200, 150, 70),
    ("astronaut", 300, 300, 90),
)
SIDE = 128


def _jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def _run(cmd: list[str]) -> list[str]:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()


def main(ssimulacra2_bin: str) -> None:
    version = subprocess.run([ssimulacra2_bin], capture_output=True, text=True).stderr.splitlines()[0]
    butteraugli = subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", "libjxl-devtools"], capture_output=True, text=True
    ).stdout
    records = []
    for photo, top, left, quality in PAIRS:
        ref = np.ascontiguousarray(getattr(data, photo)()[top : top + SIDE, left : left + SIDE, :3])
        dist = _jpeg(ref, quality)
        stem = f"{photo}_{top}_{left}_q{quality}"
        ref_path, dist_path = HERE / f"{stem}_ref.png", HERE / f"{stem}_dist.png"
        Image.fromarray(ref).save(ref_path)
        Image.fromarray(dist).save(dist_path)
        s2 = float(_run([ssimulacra2_bin, str(ref_path), str(dist_path)])[0])
        lines = _run(["butteraugli_main", str(ref_path), str(dist_path), "--pnorm", "3"])
        records.append(
            {
                "reference": ref_path.name,
                "distorted": dist_path.name,
                "jpeg_quality": quality,
                "ssimulacra2": s2,
                "butteraugli_max": float(lines[0]),
                "butteraugli_3norm": float(lines[1].split(":")[1]),
            }
        )
    out = {
        "source": {
            "ssimulacra2": f"the original tool of cloudinary/ssimulacra2 built from source ({version.strip()})",
            "butteraugli": f"butteraugli_main --pnorm 3 of Debian libjxl-devtools {butteraugli}",
            "pairs": "128x128 crops of scikit-image photos, JPEG round trip through Pillow (make_pairs.py)",
        },
        "pairs": records,
    }
    (HERE / "reference_scores.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
