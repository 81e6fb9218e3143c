"""Fault scenarios for `evaluate`, each run in a process of its own (a Ray cluster per process).

    python tests/faults/scenario.py SCENARIO WORKDIR

Scenarios: node-replaced, node-lost, actor-killed, multi-node, small-nodes (three 1-CPU nodes, default pool
options, a worker lost mid-run and replaced), single-node, run (a plain local run, for reruns).
Prints one JSON line ``{"exit": code, "seconds": s, "stderr_tail": ...}`` at the end; the test checks the outputs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pandas as pd
from PIL import Image

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def _save(img: np.ndarray, path: str, fmt: str = "PNG", **kw) -> int:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=fmt, **kw)
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return len(buf.getvalue())


def build_manifest(workdir: str, groups: int = 14, side: int = 192) -> str:
    """Smooth synthetic references with JPEG versions at five qualities (decoded to PNG)."""
    base = os.path.join(workdir, "in")
    uri = os.path.join(base, "manifest.csv")
    if os.path.exists(uri):
        return uri
    os.makedirs(base, exist_ok=True)
    rng = np.random.default_rng(7)
    rows = []
    yy, xx = np.mgrid[0:side, 0:side] / side
    for g in range(groups):
        f = rng.uniform(2, 9, size=3)
        ref = np.stack([np.sin(f[c] * (xx + yy * (c + 1)) + g) for c in range(3)], axis=-1)
        ref = ((ref + 1) * 127.5 + rng.normal(0, 6, ref.shape)).clip(0, 255).astype(np.uint8)
        _save(ref, os.path.join(base, f"r{g}.png"))
        for q in (8, 20, 40, 70, 92):
            buf = io.BytesIO()
            Image.fromarray(ref).save(buf, format="JPEG", quality=q)
            dec = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
            _save(dec, os.path.join(base, f"r{g}-q{q}.png"))
            rows.append(
                (f"r{g}", f"r{g}.png", f"r{g}-q{q}", f"r{g}-q{q}.png", "jpeg", f"q={q}", len(buf.getvalue()))
            )
    pd.DataFrame(
        rows, columns=["ref_id", "ref_uri", "dist_id", "dist_uri", "codec", "setting", "bytes"]
    ).to_csv(uri, index=False)
    return uri


def images_done(output: str) -> int:
    folder = os.path.join(output, "images", "_parts")  # a finished group's marker while the run goes
    return len(os.listdir(folder)) if os.path.isdir(folder) else 0


def wait_for(cond, timeout: float = 300.0, step: float = 0.2) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(step)
    return False


def evaluate_in_thread(argv: list[str]) -> tuple[threading.Thread, dict]:
    from jobs import evaluate

    box: dict = {}

    def target():
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            box["exit"] = evaluate.main(argv)
        box["stderr"] = err.getvalue()

    t = threading.Thread(target=target, daemon=True)
    t.start()
    return t, box


def score_actor_pids() -> list[int]:
    import psutil

    pids = []
    for p in psutil.process_iter(["name", "cmdline"]):
        text = (p.info["name"] or "") + " " + " ".join(p.info["cmdline"] or [])
        if "ScoreActor" in text:
            pids.append(p.pid)
    return pids


def main() -> int:
    scenario, workdir = sys.argv[1], sys.argv[2]
    output = os.path.join(workdir, "out" if scenario != "single-node" else "out-single")
    manifest = build_manifest(workdir)
    if scenario == "prepare":
        return 0
    argv = ["--manifest", manifest, "--output", output, "--no-progress"]
    import ray

    start = time.time()
    box: dict = {}
    if scenario in ("node-replaced", "node-lost", "multi-node", "small-nodes"):
        from ray.cluster_utils import Cluster

        small = scenario in ("multi-node", "small-nodes")
        cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1 if small else 0})
        if scenario == "multi-node":
            cluster.add_node(num_cpus=1)
            cluster.add_node(num_cpus=1, num_gpus=1)
        elif scenario == "small-nodes":
            worker = cluster.add_node(num_cpus=1)
            cluster.add_node(num_cpus=1)
        else:
            worker = cluster.add_node(num_cpus=2)
        ray.init(address=cluster.address, log_to_driver=False)
        cluster.wait_for_nodes()
        if scenario == "small-nodes":  # the pool's defaults, sized to the nodes
            t, box = evaluate_in_thread([*argv, "--stall-timeout", "240"])
            assert wait_for(lambda: images_done(output) >= 2), "the run never started"
            cluster.remove_node(worker, allow_graceful=False)
            cluster.add_node(num_cpus=1)
            t.join(timeout=600)
        elif scenario == "multi-node":
            t, box = evaluate_in_thread([*argv, "--actors", "2", "--cpus-per-actor", "0.5"])
            t.join()
        else:
            timeout = "240" if scenario == "node-replaced" else "25"
            t, box = evaluate_in_thread([*argv, "--stall-timeout", timeout, "--cpus-per-actor", "1"])
            assert wait_for(lambda: images_done(output) >= 2), "the run never started"
            cluster.remove_node(worker, allow_graceful=False)
            if scenario == "node-replaced":
                cluster.add_node(num_cpus=2)
            t.join(timeout=600)
    elif scenario == "actor-killed":
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        t, box = evaluate_in_thread(argv)
        assert wait_for(lambda: images_done(output) >= 2), "the run never started"
        pids = score_actor_pids()
        assert pids, "no scoring actor process found"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        box["killed"] = len(pids)
        t.join(timeout=600)
    else:  # run / single-node: a plain local run
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
        t, box = evaluate_in_thread(argv)
        t.join(timeout=600)
    print(json.dumps({"exit": box.get("exit"), "seconds": time.time() - start, "killed": box.get("killed"),
                      "stderr_tail": box.get("stderr", "")[-2000:]}))  # fmt: skip
    sys.stdout.flush()
    os._exit(0)  # leave no executor thread behind


if __name__ == "__main__":
    sys.exit(main())
