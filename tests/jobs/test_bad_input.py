"""Bad input is contained: each bad row lands in `errors` with its reason, every good row is written, exit 1.

Also the security promises: a manifest cannot reach outside the allowed locations, and credentials never appear in
outputs or logs.
"""

from __future__ import annotations

import glob
import io
import os

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jobs import evaluate
from pipeline.io import storage
from pipeline.scoring import results

pytestmark = pytest.mark.slow

SECRET_IN_URL = "MarkerPassw0rd-4f1c"


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def bad_rows(base: str, ref_rgb: np.ndarray) -> list[tuple[str, str, str | None]]:
    """(dist_id, dist_uri, expected error code or None when the image is converted and scored)."""
    h, w = ref_rgb.shape[:2]
    ref = Image.fromarray(ref_rgb)
    files = {
        "zero": b"",
        "trunc-png": save(ref, "PNG")[:300],
        "trunc-jpeg": save(ref, "JPEG")[:300],
        "html": b"<!DOCTYPE html><html><body>Access Denied</body></html>",
        "grey": save(ref.convert("L"), "PNG"),
        "rgba": save(ref.convert("RGBA"), "PNG"),
        "sixteen": save(Image.fromarray(np.asarray(ref.convert("L")).astype(np.uint16) * 257), "PNG"),
        "cmyk": save(ref.convert("CMYK"), "JPEG", quality=95),
        "bigger": save(ref.resize((w + 8, h)), "PNG"),
    }
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated: width and height swap, so it no longer matches the reference
    files["rotated"] = save(ref, "JPEG", quality=95, exif=exif.tobytes())
    for name, data in files.items():
        storage.write_bytes(storage.join(base, "bad", f"{name}.img"), data)
    expected = {
        "zero": "empty",
        "trunc-png": "corrupt",
        "trunc-jpeg": "corrupt",
        "html": "not_an_image",
        "grey": None,
        "rgba": None,
        "sixteen": None,
        "cmyk": None,
        "bigger": "size_mismatch",
        "rotated": "size_mismatch",
    }
    rows = [(name, f"bad/{name}.img", expected[name]) for name in files]
    rows += [
        ("absent", "bad/absent.png", "missing"),
        ("traversal", "../../../etc/hostname", "outside_roots"),
        ("file-scheme", "file:///etc/hostname", "outside_roots"),
        ("other-scheme", f"http://admin:{SECRET_IN_URL}@example.invalid/x.png", "outside_roots"),
    ]
    return rows


def test_every_bad_row_is_recorded_and_good_rows_complete(ray_local, tmp_path, local_manifest, capsys):
    manifest_uri, df = local_manifest
    base = storage.parent(manifest_uri)
    first = df.iloc[0]
    ref_rgb = np.asarray(Image.open(storage.join(base, first.ref_uri)).convert("RGB"))
    rows = bad_rows(base, ref_rgb)
    extra = pd.DataFrame(
        [{**first.to_dict(), "dist_id": d, "dist_uri": u, "codec": "bad"} for d, u, _ in rows]
    )
    uri = storage.join(base, "with-bad.csv")
    storage.write_text(uri, pd.concat([df, extra]).to_csv(index=False))
    out = str(tmp_path / "out")
    assert evaluate.main(["--manifest", uri, "--output", out, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = results.read_table(out, "errors").set_index("dist_id")
    images = results.read_table(out, "images").set_index("dist_id")
    for dist_id, _, code in rows:
        if code is None:
            assert dist_id in images.index and dist_id not in errors.index, dist_id
        else:
            assert errors.loc[dist_id, "error"] == code, (dist_id, errors.loc[dist_id].to_dict())
            assert errors.loc[dist_id, "message"]
    assert set(df.dist_id) <= set(images.index)  # every good row written
    # credentials embedded in a URL appear nowhere: not in errors, not in the console
    assert SECRET_IN_URL not in errors.to_csv() + captured.out + captured.err
    assert (
        "admin:***@" in errors.loc["other-scheme", "uri"] or "admin" not in errors.loc["other-scheme", "uri"]
    )


def test_credentials_never_reach_outputs_or_logs(ray_local, s3, s3_manifest, capsys):
    """The S3 secret in use and a password embedded in a URI are searched for in every output and log."""
    _manifest_uri, df = s3_manifest
    secret = os.environ["AWS_SECRET_ACCESS_KEY"]
    key_id = os.environ["AWS_ACCESS_KEY_ID"]
    bad = df.iloc[[0]].assign(
        dist_id="leaky", dist_uri=f"s3://admin:{SECRET_IN_URL}@{s3.bucket}/in/nothere.png"
    )
    uri = s3.uri("in/leaky.csv")
    storage.write_text(uri, pd.concat([df, bad]).to_csv(index=False))
    out = s3.uri("results")
    code = evaluate.main(["--manifest", uri, "--output", out, "--no-progress"])
    assert code == 1
    captured = capsys.readouterr()
    texts = [captured.out, captured.err]
    for key in s3.fs.find(f"{s3.bucket}/results"):
        texts.append(s3.fs.cat(key).decode("latin-1"))
    ray_logs = glob.glob("/tmp/ray/session_latest/logs/**/*", recursive=True)
    for path in ray_logs:
        if os.path.isfile(path) and os.path.getsize(path) < 50_000_000:
            with open(path, "rb") as f:
                texts.append(f.read().decode("latin-1"))
    blob = "\n".join(texts)
    assert len(texts) > 5
    for marker in (secret, SECRET_IN_URL, key_id):
        assert marker not in blob, f"{marker!r} leaked"
    assert "leaky" in results.read_table(out, "errors")["dist_id"].tolist()
