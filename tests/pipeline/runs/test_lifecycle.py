"""The run lifecycle: run.json at start and finish, run-id reuse, refusal of another run's folder, the registry."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pipeline.io import storage
from pipeline.runs import lifecycle, registry
from pipeline.runs.lifecycle import OutputConflict, Run

IDENTITY = {"manifest": "/data/manifest.csv", "pairs": "all", "model": "prfnet-tiny"}


@pytest.fixture(params=["local", "s3"])
def output(request, tmp_path):
    if request.param == "local":
        return str(tmp_path / "results")
    return request.getfixturevalue("s3").uri("results")


def read(output: str, file: str = "run.json") -> dict:
    return json.loads(storage.read_text(storage.join(output, file)))


def test_a_new_output_is_running_then_finished(output):
    run = Run.open(output, kind="evaluate", identity=IDENTITY, prefix="run", config={"actors": 2},
                   command="prfeval evaluate --output x", fields={"model": "prfnet-tiny"})  # fmt: skip
    assert run.previous is None and run.run_id.startswith("run-")
    started = read(output)
    assert started["status"] == "running" and started["finished_at"] is None
    assert started["run_id"] == run.run_id and started["kind"] == "evaluate"
    assert started["fingerprint"] == run.fingerprint and started["config"] == {"actors": 2}
    assert started["model"] == "prfnet-tiny" and started["versions"]["python"] and started["counts"] == {}

    run.finish(counts={"groups": 3, "seconds_last": float("nan")}, fields={"verdict": "pass"})
    done = read(output)
    assert (
        done["status"] == "finished" and done["finished_at"] and done["started_at"] == started["started_at"]
    )
    assert done["counts"] == {"groups": 3, "seconds_last": None}  # strict JSON: no NaN
    assert done["verdict"] == "pass" and done["model"] == "prfnet-tiny"
    assert lifecycle.read_record(output) == done


def test_same_fingerprint_resumes_another_is_refused(output):
    first = Run.open(output, kind="clic", identity=IDENTITY)
    first.update(status=lifecycle.INCOMPLETE, counts={"groups": 1})
    first.finish()
    assert read(output)["status"] == "incomplete"

    again = Run.open(output, kind="clic", identity=dict(reversed(list(IDENTITY.items()))))
    assert again.run_id == first.run_id and again.previous["status"] == "incomplete"
    assert read(output)["status"] == "running" and read(output)["counts"] == {"groups": 1}

    with pytest.raises(OutputConflict, match="another configuration"):
        Run.open(output, kind="clic", identity={**IDENTITY, "pairs": "matched"})
    assert read(output)["run_id"] == first.run_id  # the refused run wrote nothing

    other = Run.open(output, kind="clic", identity={**IDENTITY, "pairs": "matched"}, on_other="replace")
    assert other.run_id != first.run_id and other.previous is None


def test_finished_units_and_another_file_name(output):
    run = Run.open(output, kind="train", identity=IDENTITY, file="train.json", status="starting",
                   fields={"epochs_done": 0})  # fmt: skip
    assert not storage.exists(storage.join(output, "run.json"))
    assert read(output, "train.json")["status"] == "starting" and run.finished("images") == set()
    storage.write_bytes(storage.join(output, "images", "g-1.parquet"), b"x")
    storage.write_bytes(storage.join(output, "images", "g-2.parquet"), b"x")
    assert run.finished("images") == {"g-1", "g-2"}

    record = read(output, "train.json")  # written meanwhile by the workers
    lifecycle.write_record(output, {**record, "epochs_done": 2, "status": "finished"}, file="train.json")
    loaded = Run.load(output, file="train.json")
    loaded.refresh()
    loaded.finish()
    done = read(output, "train.json")
    assert done["epochs_done"] == 2 and done["status"] == "finished" and done["finished_at"]


def test_the_registry_gets_the_finished_run(output, tmp_path, monkeypatch):
    monkeypatch.delenv(registry.ENV_VAR, raising=False)
    root = str(tmp_path / "registry")
    unrecorded = Run.open(storage.join(output, "a"), kind="sweep", identity=IDENTITY)
    unrecorded.finish()
    assert registry.files(root) == []

    run = Run.open(storage.join(output, "b"), kind="evaluate", identity=IDENTITY, registry=root,
                   config={"manifest": "/data/manifest.csv"}, fields={"model": "prfnet-tiny"})  # fmt: skip
    assert registry.files(root) == []  # recorded when it finishes
    run.finish(counts={"groups": 2, "pairs": 5})
    rows = registry.read(root)
    assert list(rows["run_id"]) == [run.run_id]
    row = rows.iloc[0]
    assert (
        row["status"] == "finished" and row["counts_pairs"] == 5 and row["manifest"] == "/data/manifest.csv"
    )
    assert row["results_uri"] == storage.display(storage.join(output, "b"))

    monkeypatch.setenv(registry.ENV_VAR, root)  # registry=None: the environment's registry
    env = Run.open(storage.join(output, "c"), kind="evaluate", identity=IDENTITY, registry=None)
    env.finish()
    assert set(registry.read(root)["run_id"]) == {run.run_id, env.run_id}


def test_the_record_is_created_exclusively(output):
    assert lifecycle.create_record(output, {"run_id": "run-a"})
    assert not lifecycle.create_record(output, {"run_id": "run-b"})
    assert read(output) == {"run_id": "run-a"}  # the second create changed nothing
    if not output.startswith("s3://"):
        assert sorted(os.listdir(output)) == ["run.json"]  # no temporary file left behind


def test_simultaneous_starts_share_one_run(output):
    """Identical starts at once: one creates the run, every other adopts its run id (no run.json seen by any)."""
    barrier = threading.Barrier(6)

    def start(_):
        barrier.wait()
        return Run.open(output, kind="evaluate", identity=IDENTITY, prefix="run")

    with ThreadPoolExecutor(6) as pool:
        runs = list(pool.map(start, range(6)))
    assert len({r.run_id for r in runs}) == 1
    assert sum(r.previous is None for r in runs) == 1  # exactly one created the run
    assert read(output)["run_id"] == runs[0].run_id and read(output)["status"] == "running"


def test_simultaneous_starts_of_another_configuration_are_refused(output):
    barrier = threading.Barrier(2)

    def start(pairs):
        barrier.wait()
        try:
            return Run.open(output, kind="evaluate", identity={**IDENTITY, "pairs": pairs})
        except OutputConflict as e:
            return e

    with ThreadPoolExecutor(2) as pool:
        outcomes = list(pool.map(start, ["all", "matched"]))
    assert sorted(type(o).__name__ for o in outcomes) == ["OutputConflict", "Run"]
    (winner,) = [o for o in outcomes if isinstance(o, Run)]
    assert read(output)["run_id"] == winner.run_id and read(output)["fingerprint"] == winner.fingerprint
