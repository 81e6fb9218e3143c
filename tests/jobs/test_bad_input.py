"""Bad input is contained: each bad row lands in `errors` with its reason, every good row is written, exit 1.

Also the security promises: a manifest cannot reach outside the allowed locations, and credentials never appear in
outputs or logs; and input every actor would fail on (a pickled, truncated or foreign checkpoint, an unknown model)
is refused on the driver, before Ray starts: one line, exit 2.
"""

from __future__ import annotations

import glob
import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from jobs import clic as clic_job
from jobs import evaluate, regress
from pipeline.io import storage
from pipeline.runs import ray_runtime
from pipeline.scoring import results

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


@pytest.mark.slow
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


@pytest.mark.slow
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


FILE_SECRET = "FileContent-Secret-61b9"  # inside files given as images: never in a message


def mixed_rows(base: str, ref_rgb: np.ndarray) -> list[dict]:
    """A fixed mix of bad rows of many kinds, with the expected outcome of each: ``code`` is the error code, or
    None for a row that is scored (then ``conversions`` is what decoding must record)."""
    h, w = ref_rgb.shape[:2]
    ref = Image.fromarray(ref_rgb)
    alpha = np.full((h, w), 255, np.uint8)
    alpha[: h // 4] = 0
    frames = [ref, ref.rotate(1), ref.rotate(2)]
    anim = io.BytesIO()
    frames[0].save(anim, format="GIF", save_all=True, append_images=frames[1:])
    files = {
        "text.png": f"api_key={FILE_SECRET}\n".encode(),
        "page.png": f"<!DOCTYPE html><html>{FILE_SECRET}</html>".encode(),
        "zip.png": b"PK\x03\x04" + FILE_SECRET.encode(),
        "anim.gif": anim.getvalue(),
        "alpha.png": save(Image.fromarray(np.dstack([ref_rgb, alpha]), "RGBA"), "PNG"),
        "palette.png": save(ref.convert("P"), "PNG"),
        "grey16.png": save(Image.fromarray(np.asarray(ref.convert("L")).astype(np.uint16) * 257), "PNG"),
        "ok.png": save(ref, "PNG"),
    }
    for name, data in files.items():
        storage.write_bytes(storage.join(base, "mixed", name), data)
    os.makedirs(storage.join(base, "mixed", "folder"), exist_ok=True)
    for link, target in (("out.png", "/etc/hostname"), ("in.png", storage.join(base, "mixed", "ok.png"))):
        path = storage.join(base, "mixed", link)
        if not os.path.lexists(path):
            os.symlink(target, path)
    rows = [
        # URIs
        ("nul-uri", "mixed/o\x00k.png", "unreadable", {}),
        ("control-uri", "mixed/\x1b[2J\x07.png", "missing", {}),
        ("blank-uri", "   ", "missing_value", {}),
        ("huge-uri", "mixed/" + "x" * 4000 + ".png", "read", {}),
        ("folder", "mixed/folder", "read", {}),
        ("link-out", "mixed/out.png", "outside_roots", {}),
        ("climb-abs", storage.join(base, "mixed", "..", "..", "..", "etc", "hostname"), "outside_roots", {}),
        ("file-climb", "file://" + storage.join(base, "..", "x.png"), "outside_roots", {}),
        # files
        ("text", "mixed/text.png", "not_an_image", {}),
        ("page", "mixed/page.png", "not_an_image", {}),
        ("zip", "mixed/zip.png", "not_an_image", {}),
        ("animated", "mixed/anim.gif", "animated", {}),
        ("alpha", "mixed/alpha.png", "alpha_mismatch", {}),
        # manifest values
        ("bytes-letters", "mixed/ok.png", "bad_value", {"bytes": "many"}),
        ("bytes-inf", "mixed/ok.png", "bad_value", {"bytes": "inf"}),
        ("bytes-huge", "mixed/ok.png", "bad_value", {"bytes": "1e30"}),
        ("bytes-negative", "mixed/ok.png", "bad_value", {"bytes": "-5"}),
        ("no-codec", "mixed/ok.png", "missing_value", {"codec": " "}),
        # scored, with what decoding did recorded
        ("link-in", "mixed/in.png", None, {"conversions": ""}),
        ("palette", "mixed/palette.png", None, {"conversions": "palette->RGB"}),
        ("grey16", "mixed/grey16.png", None, {"conversions": "greyscale->RGB; 16->8 bits"}),
        ("weird\x01id\u202e", "mixed/ok.png", None, {"conversions": ""}),
    ]
    return [{"dist_id": d, "dist_uri": u, "code": c, **x} for d, u, c, x in rows]


def test_a_mixed_manifest_end_to_end(ray_local, tmp_path, local_manifest, capsys):
    """A few dozen bad rows of every kind among good ones: exit 1, every good row in images once, every bad one in
    errors once with its code, nothing of a secret or of a file's content in any message."""
    from pipeline.report import ReportOptions, make_report

    manifest_uri, df = local_manifest
    base = storage.parent(manifest_uri)
    first = df.iloc[0]
    ref_rgb = np.asarray(Image.open(storage.join(base, first.ref_uri)).convert("RGB"))
    legacy = bad_rows(base, ref_rgb)
    mixed = mixed_rows(base, ref_rgb)
    extra = [{**first.to_dict(), "dist_id": d, "dist_uri": u, "codec": "bad"} for d, u, _ in legacy] + [
        {
            **first.to_dict(),
            "codec": "odd",
            **{k: v for k, v in r.items() if k not in ("code", "conversions")},
        }
        for r in mixed
    ]
    # a reference that cannot be used loses its group only; a second spelling of a ref_id is refused
    extra += [
        {**first.to_dict(), "ref_id": "ref-page", "ref_uri": "mixed/page.png", "dist_id": "of-page-1"},
        {**first.to_dict(), "ref_id": "ref-page", "ref_uri": "mixed/page.png", "dist_id": "of-page-2"},
        {**first.to_dict(), "ref_id": "ref-out", "ref_uri": "mixed/out.png", "dist_id": "of-out"},
        {**first.to_dict(), "ref_id": "twice", "ref_uri": "mixed/ok.png", "dist_id": "twice-1"},
        {**first.to_dict(), "ref_id": "twice", "ref_uri": "mixed/in.png", "dist_id": "twice-2"},
        {**first.to_dict(), "dist_id": "", "dist_uri": "mixed/ok.png"},
    ]
    group_codes = {"of-page-1": "reference_not_an_image", "of-page-2": "reference_not_an_image",
                   "of-out": "outside_roots", "twice-1": "conflicting_ref", "twice-2": "conflicting_ref"}  # fmt: skip
    uri = storage.join(base, "mixed.csv")
    storage.write_text(uri, pd.concat([df, pd.DataFrame(extra)]).to_csv(index=False))
    out = str(tmp_path / "out")
    assert evaluate.main(["--manifest", uri, "--output", out, "--no-progress"]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    errors = results.read_table(out, "errors")
    images = results.read_table(out, "images")
    expected_bad = {d: c for d, _, c in legacy if c} | {r["dist_id"]: r["code"] for r in mixed if r["code"]}
    expected_bad |= group_codes
    expected_good = set(df.dist_id) | {d for d, _, c in legacy if c is None}
    expected_good |= {r["dist_id"] for r in mixed if r["code"] is None}
    assert len(df) + len(extra) >= 40
    # every good row exactly once, every bad row exactly once with its code, the id-less row once
    assert sorted(images["dist_id"]) == sorted(expected_good)
    named = errors[errors["dist_id"].notna()]
    assert sorted(named["dist_id"]) == sorted(expected_bad)
    assert dict(zip(named["dist_id"], named["error"], strict=True)) == expected_bad
    assert (errors["dist_id"].isna() & (errors["error"] == "missing_value")).sum() == 1
    assert len(errors) == len(expected_bad) + 1
    # what decoding did is recorded per image, empty for plain RGB images
    conv = dict(zip(images["dist_id"], images["conversions"], strict=True))
    assert all(conv[d] == "" for d in df.dist_id) and set(images["ref_conversions"]) == {""}
    for r in mixed:
        if r["code"] is None:
            assert conv[r["dist_id"]] == r["conversions"], r["dist_id"]
    assert conv["grey"] == "greyscale->RGB" and conv["cmyk"] == "CMYK->RGB"
    assert conv["rgba"] == "opaque alpha channel dropped"
    # no secret and nothing of a file's content anywhere a user reads
    hostname = Path("/etc/hostname").read_text().strip() if os.path.exists("/etc/hostname") else ""
    blob = errors.to_csv() + captured.out + captured.err
    assert FILE_SECRET not in blob and SECRET_IN_URL not in blob
    assert len(hostname) < 6 or hostname not in errors["message"].str.cat(sep="\n")
    for message in errors["message"]:
        assert message and "\n" not in message and "\x00" not in message
    warnings = make_report(out, ReportOptions(figures=False, n_boot=20)).document["warnings"]
    assert any(w.startswith("6 image(s) were converted before scoring") and "greyscale->RGB (3)" in w
               for w in warnings), warnings  # fmt: skip


def test_bad_objects_on_s3_are_each_their_rows_error(ray_local, s3, s3_manifest, capsys):
    """The kinds that apply to an object store: a missing key, an object that is not an image, an image of the
    wrong size, and ``..`` climbing out of the allowed prefix to an object that exists."""
    _manifest_uri, df = s3_manifest
    first = df.iloc[0]
    ref = np.asarray(Image.open(io.BytesIO(s3.fs.cat(f"{s3.bucket}/in/{first.ref_uri}"))).convert("RGB"))
    h, w = ref.shape[:2]
    s3.fs.pipe(f"{s3.bucket}/in/bad/page.png", f"<html>{FILE_SECRET}</html>".encode())
    s3.fs.pipe(f"{s3.bucket}/in/bad/small.png", save(Image.fromarray(ref[: h // 2, : w // 2]), "PNG"))
    s3.fs.pipe(
        f"{s3.bucket}/private/ref-copy.png", save(Image.fromarray(ref), "PNG")
    )  # a good image, not allowed
    s3.fs.pipe(f"{s3.bucket}/in/bad/empty.png", b"")
    rows = {
        "s3-missing": ("bad/nothere.png", "missing"),
        "s3-page": ("bad/page.png", "not_an_image"),
        "s3-small": ("bad/small.png", "size_mismatch"),
        "s3-empty": ("bad/empty.png", "empty"),
        "s3-climb": ("../private/ref-copy.png", "outside_roots"),
        "s3-climb-abs": (f"s3://{s3.bucket}/in/bad/../../private/ref-copy.png", "outside_roots"),
        "s3-other-bucket": ("s3://another-bucket-prfeval/x.png", "outside_roots"),
    }
    extra = pd.DataFrame(
        [{**first.to_dict(), "dist_id": d, "dist_uri": u, "codec": "bad"} for d, (u, _) in rows.items()]
    )
    uri = s3.uri("in/mixed.csv")
    storage.write_text(uri, pd.concat([df, extra]).to_csv(index=False))
    out = s3.uri("results-mixed")
    assert evaluate.main(["--manifest", uri, "--output", out, "--no-progress"]) == 1
    captured = capsys.readouterr()
    errors = results.read_table(out, "errors")
    images = results.read_table(out, "images")
    assert sorted(images["dist_id"]) == sorted(df.dist_id)
    assert dict(zip(errors["dist_id"], errors["error"], strict=True)) == {d: c for d, (_, c) in rows.items()}
    assert len(errors) == len(rows)
    blob = errors.to_csv() + captured.out + captured.err
    assert FILE_SECRET not in blob and os.environ["AWS_SECRET_ACCESS_KEY"] not in blob
    assert set(images["conversions"]) == {""}


class _Payload:
    """Unpickling this writes a marker file: proof that a checkpoint was (or was not) unpickled."""

    marker = ""

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _safetensors(metadata: dict | None) -> bytes:
    header = {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    if metadata is not None:
        header["__metadata__"] = {"prfeval": json.dumps(metadata)}
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"\0" * 8


def bad_checkpoints(folder, marker: str) -> dict[str, tuple[str, list[str], str]]:
    """name -> (URI, extra arguments, what the message must say)."""
    from model.bundled import default_checkpoint

    packaged = default_checkpoint("prfnet-tiny")
    _Payload.marker = marker
    files = {
        "pickled.pt": pickle.dumps({"state_dict": _Payload()}, protocol=4),
        "truncated.safetensors": Path(packaged).read_bytes()[:4096],
        "no-metadata.safetensors": _safetensors(None),
        "other-model.safetensors": _safetensors({"model": "lpips-vgg", "config": {}, "format_version": 1}),
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:  # what torch.save writes: a zip holding a pickle
        z.writestr("archive/data.pkl", pickle.dumps({"w": _Payload()}, protocol=2))
    files["torch-save.pt"] = buf.getvalue()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {
        "pickled": (str(folder / "pickled.pt"), [], "pickled PyTorch checkpoint"),
        "torch.save": (str(folder / "torch-save.pt"), [], "pickled PyTorch checkpoint"),
        "truncated": (str(folder / "truncated.safetensors"), [], "is truncated"),
        "wrong variant": (packaged, ["--model", "prfnet"], "holds 'prfnet-tiny', not --model 'prfnet'"),
        "other model": (str(folder / "other-model.safetensors"), [], "holds 'lpips-vgg'"),
        "not prfeval": (str(folder / "no-metadata.safetensors"), [], "without prfeval metadata"),
        "absent": (str(folder / "absent.safetensors"), [], "no such file"),
    }


def _command_argv(command: str, tmp_path, local_manifest) -> tuple[list[str], str]:
    """The real command line of ``command`` with good inputs, and the output it would write."""
    manifest_uri, _ = local_manifest
    if command == "evaluate":
        out = str(tmp_path / "results")
        return ["--manifest", manifest_uri, "--output", out], out
    if command == "regress":
        out = str(tmp_path / "regress")
        argv = ["--baseline", manifest_uri, "--candidate", manifest_uri, "--output", out,
                "--allow-root", storage.parent(manifest_uri)]  # fmt: skip
        return argv, out
    (tmp_path / "clic.csv").write_text("astronaut.png,a.png,b.png\n")
    out = str(tmp_path / "clic" / "submission.csv")
    argv = ["--csv", str(tmp_path / "clic.csv"), "--images", str(tmp_path / "in"), "--output", out,
            "--work", str(tmp_path / "clic-work")]  # fmt: skip
    return argv, str(tmp_path / "clic-work")


MAINS = {"evaluate": evaluate.main, "regress": regress.main, "clic": clic_job.main}


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if a command tries to start or join Ray."""
    import ray

    was = ray.is_initialized()

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray_runtime, "ensure_ray", refuse)
    yield
    assert ray.is_initialized() == was


@pytest.mark.parametrize("command", sorted(MAINS))
def test_bad_checkpoints_are_refused_before_ray_starts(command, tmp_path, local_manifest, no_ray, capsys):
    marker = str(tmp_path / "unpickled")
    argv, out = _command_argv(command, tmp_path, local_manifest)
    for case, (uri, extra, says) in bad_checkpoints(tmp_path, marker).items():
        code = MAINS[command]([*argv, "--checkpoint", uri, *extra, "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2, (command, case, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("prfeval: error: "), (command, case, err)
        assert says in lines[0], (command, case, err)
        assert "Traceback" not in err
        assert not os.path.exists(out), (command, case)  # nothing written: no run.json, no group
        assert not os.path.exists(marker), "the checkpoint was unpickled"


@pytest.mark.parametrize("command", sorted(MAINS))
def test_unknown_model_is_refused_before_ray_starts(command, tmp_path, local_manifest, no_ray, capsys):
    argv, out = _command_argv(command, tmp_path, local_manifest)
    assert MAINS[command]([*argv, "--model", "prfnet-tinny"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown model 'prfnet-tinny'; did you mean 'prfnet-tiny'" in err
    assert not os.path.exists(out)


def test_bad_codec_table_is_refused_before_ray_starts(tmp_path, local_manifest, no_ray, capsys):
    manifest_uri, _ = local_manifest
    table = tmp_path / "codecs.csv"
    table.write_text("name,version\njpeg,1\n")
    out = str(tmp_path / "results")
    assert evaluate.main(["--manifest", manifest_uri, "--codecs", str(table), "--output", out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not os.path.exists(out)


@pytest.mark.parametrize(
    ("header", "words"),
    [
        ("ref_id,ref_uri,dist_id,dist_uri,codec,dist_uri", "named more than once: 'dist_uri'"),
        ("ref_id,ref_uri,dist_id,dist_uri,codec,note,note", "named more than once: 'note'"),
        ("ref_id,ref_uri,dist_id,codec", "missing required column(s) dist_uri"),
    ],
    ids=["duplicated-required", "duplicated-extra", "missing-required"],
)
def test_a_manifest_fault_is_one_usage_error(tmp_path, capsys, header, words):
    """A fault of the manifest as a whole: exit 2 with one line naming it, before any work (nothing written)."""
    cells = {
        "ref_id": "r",
        "ref_uri": "a.png",
        "dist_id": "d",
        "dist_uri": "b.png",
        "codec": "jpeg",
        "note": "n",
    }
    manifest = tmp_path / "m.csv"
    manifest.write_text(header + "\n" + ",".join(cells[c] for c in header.split(",")) + "\n")
    out = tmp_path / "out"
    assert evaluate.main(["--manifest", str(manifest), "--output", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (out / "images").exists()


@pytest.mark.slow
def test_an_actor_that_cannot_start_ends_the_run_with_one_line(ray_local, tmp_path, local_manifest, capsys):
    """A checkpoint whose header is sound but whose weights fit no prfnet-tiny passes the driver's check and fails
    in every actor's constructor: one line naming the cause, exit 2, no Ray retry noise, no traceback."""
    bad = tmp_path / "wrong-weights.safetensors"
    bad.write_bytes(_safetensors({"model": "prfnet-tiny", "config": {}, "format_version": 1}))
    manifest_uri, _ = local_manifest
    out = str(tmp_path / "out")
    argv = ["--manifest", manifest_uri, "--output", out, "--checkpoint", str(bad), "--no-progress"]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "retries remaining" not in err
    lines = [line for line in err.splitlines() if line.startswith("prfeval")]
    assert len(lines) == 1, err
    assert "scoring stopped: CheckpointError" in lines[0] and "weights do not match" in lines[0], err
    assert "rerun the same command" in lines[0]


def test_a_crash_is_one_line_and_exit_2_with_the_trace_under_verbose(capsys):
    from jobs.common import command

    @command
    def main(argv):
        raise RuntimeError("disk on fire\nwith details")

    assert main([]) == 2
    err = capsys.readouterr().err
    assert err == "prfeval: error: RuntimeError: disk on fire (--verbose shows the full trace)\n"
    assert main(["--verbose"]) == 2
    err = capsys.readouterr().err
    assert (
        "Traceback" in err
        and "with details" in err
        and err.endswith("prfeval: error: RuntimeError: disk on fire\n")
    )
    assert ray_runtime.VERBOSE_ENV not in os.environ or os.environ[ray_runtime.VERBOSE_ENV] != "1"
