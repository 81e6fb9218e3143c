"""Faults survived: nodes lost and replaced, actors and drivers killed, object storage restarted.

Each scenario runs in a process of its own (real Ray clusters on this machine via ``ray.cluster_utils.Cluster``);
the checks read the results back: every reference group written, every pair exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from pipeline.io import storage
from pipeline.scoring import results

pytestmark = pytest.mark.slow

SCENARIO = str(Path(__file__).with_name("scenario.py"))
GROUPS, PER_GROUP = 14, 5


def scenario(name: str, workdir: Path, timeout: float = 900) -> dict:
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.run([sys.executable, SCENARIO, name, str(workdir)], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"scenario {name} printed no result:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(lines[-1])


def assert_complete_once(output: str) -> pd.DataFrame:
    pairs = results.read_table(output, "pairs")
    images = results.read_table(output, "images")
    assert len(images) == GROUPS * PER_GROUP
    assert len(pairs) == GROUPS * PER_GROUP * (PER_GROUP - 1) // 2
    assert not pairs.duplicated(["ref_id", "a_id", "b_id"]).any()
    assert not images.duplicated(["dist_id"]).any()
    assert images["run_id"].nunique() == 1
    return pairs


def test_worker_node_replaced_mid_run(tmp_path):
    res = scenario("node-replaced", tmp_path)
    assert res["exit"] == 0, res
    assert_complete_once(str(tmp_path / "out"))


def test_small_nodes_default_pool_survives_a_lost_node(tmp_path):
    """Three 1-CPU nodes with the default options: actors of one node's CPU (not the cluster's total less one),
    one per node but one left to decode; a worker lost mid-run and replaced; every row exactly once."""
    res = scenario("small-nodes", tmp_path)
    assert res["exit"] == 0, res
    assert_complete_once(str(tmp_path / "out"))
    record = json.loads((tmp_path / "out" / "run.json").read_text())
    assert record["pool"] == {"actors": 2, "cpus_per_actor": 1.0}
    assert record["status"] == "finished" and record["counts"]["images"] == GROUPS * PER_GROUP


def test_worker_node_lost_stops_in_bounded_time_and_rerun_finishes(tmp_path):
    t0 = time.time()
    res = scenario("node-lost", tmp_path)
    assert res["exit"] == 2, res
    assert "no reference group finished in 25 s" in res["stderr_tail"] and "rerun" in res["stderr_tail"]
    assert time.time() - t0 < 600  # bounded: the stall timeout, not forever
    partial = len(results.read_table(str(tmp_path / "out"), "images"))
    assert 0 < partial < GROUPS * PER_GROUP
    again = scenario("run", tmp_path)
    assert again["exit"] == 0, again
    assert_complete_once(str(tmp_path / "out"))


def test_actor_killed_mid_batch_is_retried(tmp_path):
    res = scenario("actor-killed", tmp_path)
    assert res["killed"] >= 1 and res["exit"] == 0, res
    assert_complete_once(str(tmp_path / "out"))


def test_three_node_cluster_matches_single_node(tmp_path):
    multi = scenario("multi-node", tmp_path)
    assert multi["exit"] == 0, multi
    single = scenario("single-node", tmp_path)
    assert single["exit"] == 0, single
    a = assert_complete_once(str(tmp_path / "out")).set_index(["a_id", "b_id"])["p_a"].sort_index()
    b = assert_complete_once(str(tmp_path / "out-single")).set_index(["a_id", "b_id"])["p_a"].sort_index()
    assert a.index.equals(b.index)
    assert (a - b).abs().max() < 1e-5


def _prfeval(*args: str) -> list[str]:
    return [sys.executable, "-m", "jobs.cli", *args]


def test_driver_killed_then_rerun_completes_without_duplicates(tmp_path):
    subprocess.run([sys.executable, SCENARIO, "prepare", str(tmp_path)], check=True, capture_output=True)
    manifest, out = str(tmp_path / "in" / "manifest.csv"), str(tmp_path / "out")
    cmd = _prfeval("evaluate", "--manifest", manifest, "--output", out, "--no-progress")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    images = Path(out) / "images"
    deadline = time.time() + 600
    while time.time() < deadline and not (images.is_dir() and len(list(images.iterdir())) >= 2):
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    os.killpg(proc.pid, signal.SIGKILL)  # the local Ray it started goes with it
    partial = len(list(images.iterdir()))
    assert partial < GROUPS
    run_id = json.loads((Path(out) / "run.json").read_text())["run_id"]
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{partial} already done" in again.stdout or "already done" in again.stdout
    pairs = assert_complete_once(out)
    assert set(pairs["run_id"]) == {run_id}


def test_s3_server_restarted_mid_run(tmp_path, s3, s3_control):
    subprocess.run([sys.executable, SCENARIO, "prepare", str(tmp_path)], check=True, capture_output=True)
    local_in = tmp_path / "in"
    for f in local_in.iterdir():
        storage.write_bytes(s3.uri(f"in/{f.name}"), f.read_bytes())
    out = s3.uri("out")
    cmd = _prfeval("evaluate", "--manifest", s3.uri("in/manifest.csv"), "--output", out, "--no-progress")
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 600
    while time.time() < deadline and len(storage.listdir(storage.join(out, "images", "_parts"))) < 2:
        time.sleep(0.3)
    s3_control.restart(downtime=4.0)
    _stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    assert_complete_once(out)
