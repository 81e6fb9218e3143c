"""Two `evaluate` commands started at once against the same output: one run, every row exactly once.

Both start before either has written ``run.json`` (the start is forced to race: each command's first look at the
output waits for the other's), on one local Ray.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from jobs import evaluate
from pipeline.io import storage
from pipeline.runs import lifecycle
from pipeline.scoring import results

pytestmark = pytest.mark.slow


@pytest.fixture
def racing_starts(monkeypatch):
    """Each thread's first read of a run record waits until two threads have read: both see no run.json."""
    barrier = threading.Barrier(2, timeout=120)
    seen: set[int] = set()
    read = lifecycle.read_record

    def first_read_together(*args, **kwargs):
        record = read(*args, **kwargs)
        if threading.get_ident() not in seen:
            seen.add(threading.get_ident())
            barrier.wait()
        return record

    monkeypatch.setattr(lifecycle, "read_record", first_read_together)


def both(*argvs: list[str]) -> list[int]:
    with ThreadPoolExecutor(len(argvs)) as pool:
        return list(pool.map(evaluate.main, argvs))


def small_pool(manifest: str, out: str, *extra: str) -> list[str]:
    # two pools of one half-CPU actor share the 2-CPU local Ray and leave a CPU to decode
    return ["--manifest", manifest, "--output", out, "--actors", "1", "--cpus-per-actor", "0.5", "--no-progress",
            *extra]  # fmt: skip


def test_identical_commands_at_once_write_every_row_once(ray_local, tmp_path, local_manifest, racing_starts):
    manifest_uri, df = local_manifest
    out = str(tmp_path / "out")
    assert both(small_pool(manifest_uri, out), small_pool(manifest_uri, out)) == [0, 0]

    images, pairs = results.read_table(out, "images"), results.read_table(out, "pairs")
    assert len(images) == len(df) and not images.duplicated(["dist_id"]).any()
    per_group = df.groupby("ref_id").size()
    assert len(pairs) == sum(n * (n - 1) // 2 for n in per_group)
    assert not pairs.duplicated(["ref_id", "a_id", "b_id"]).any()
    record = json.loads(storage.read_text(storage.join(out, "run.json")))  # valid JSON
    assert set(images["run_id"]) == set(pairs["run_id"]) == {record["run_id"]}
    assert record["status"] == "finished"
    assert record["counts"]["images"] == len(df) and record["counts"]["pairs"] == len(pairs)
    assert record["counts"]["errors"] == 0


def test_another_configuration_at_once_is_refused(ray_local, tmp_path, local_manifest, racing_starts, capsys):
    manifest_uri, df = local_manifest
    out = str(tmp_path / "out")
    codes = both(small_pool(manifest_uri, out), small_pool(manifest_uri, out, "--pairs", "adjacent"))
    assert sorted(codes) == [0, 2]
    assert "holds results of another configuration" in capsys.readouterr().err
    images = results.read_table(out, "images")
    record = json.loads(storage.read_text(storage.join(out, "run.json")))
    assert len(images) == len(df) and set(images["run_id"]) == {record["run_id"]}
    assert record["status"] == "finished"
