"""The README's nightly example, run as written on three consecutive nights (on the real S3 server).

The lines are read from the README itself, so the example cannot drift from what works. Two substitutions make
them run here: the bucket is the test's bucket, and the GPU actors become one CPU actor (this machine has no
GPU). Night 0 runs the same sweep and evaluate under the name ``release``: the fixed baseline the example
compares against. Every night must end with exit 0 and its own comparison folder, and a rerun of a night resumes
its comparison instead of colliding with it.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jobs import cli
from pipeline.io import storage
from pipeline.scoring import results

pytestmark = pytest.mark.slow

README = Path(__file__).resolve().parents[2] / "README.md"
DATE = "2026-11-24"


def nightly_commands() -> list[list[str]]:
    text = README.read_text()
    block = text.split("A typical nightly run:", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").strip().splitlines()
    return [shlex.split(line) for line in lines if line.strip()]


def for_night(cmd: list[str], bucket: str, night: str) -> list[str]:
    out = [a.replace("s3://bucket", bucket).replace(DATE, night) for a in cmd[1:]]  # drop "prfeval"
    for flag, value in (("--actors", "1"), ("--gpus-per-actor", "0")):
        if flag in out:
            out[out.index(flag) + 1] = value
    return out


def test_the_readme_nightly_runs_three_nights_in_a_row(ray_local, s3):
    commands = nightly_commands()
    assert [c[:2] for c in commands] == [
        ["prfeval", n] for n in ("sweep", "evaluate", "report", "regress", "query")
    ]
    from skimage import data

    for name in ("astronaut", "coffee"):  # two small real photos as the nightly references
        rgb = np.asarray(Image.fromarray(getattr(data, name)()).resize((72, 64), Image.Resampling.LANCZOS))
        storage.write_bytes(s3.uri(f"refs/{name}.png"), _png(rgb))
    bucket = s3.uri()
    for cmd in commands[:2]:  # night 0: the release run the example's baseline names
        assert cli.main(for_night(cmd, bucket, "release")) == 0, cmd
    outputs = []
    for night in ("2026-11-24", "2026-11-25", "2026-11-26"):
        for cmd in commands:
            assert cli.main(for_night(cmd, bucket, night)) == 0, (night, cmd[1])
        folders = s3.fs.ls(f"{s3.bucket}/results/{night}/regress")
        assert len(folders) == 1, folders  # one comparison, inside tonight's candidate
        assert not s3.fs.exists(f"{s3.bucket}/results/regress")  # no folder that every night would share
        outputs.append("s3://" + folders[0])
        assert re.search(r"/regress/vs-run-", outputs[-1])
        assert storage.read_text(storage.join(outputs[-1], "regress.md")).startswith(
            "# prfeval regress: no regression"
        )
        assert results.read_run(outputs[-1])["verdict"] == "pass"
    assert len(set(outputs)) == 3
    # a night run again resumes its own comparison (same run id), it does not collide with it
    before = results.read_run(outputs[-1])["run_id"]
    assert cli.main(for_night(commands[3], bucket, "2026-11-26")) == 0
    assert results.read_run(outputs[-1])["run_id"] == before


def _png(rgb: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue()
