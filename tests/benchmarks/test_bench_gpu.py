"""benchmarks/bench_gpu.py --dry-run: the GPU benchmark's code paths on the CPU, so the script keeps working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_prints_every_row_of_the_table():
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "TQDM_DISABLE": "1"}
    env.pop("RAY_ADDRESS", None)  # a local Ray of its own
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench_gpu.py", "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("cpu: ") and "torch" in lines[0]
    table = lines[lines.index(next(line for line in lines if line.startswith("section"))) :]
    rows = [line.split() for line in table[2:]]
    for precision in ("fp32", "bf16", "fp16"):
        for batch in ("2", "4", "auto"):
            assert any(r[:4] == ["encode", f"{precision},", "batch", batch] for r in rows), (precision, batch)
        assert any(r[:3] == ["fits", precision, "16"] for r in rows)
    assert any(line.startswith("encode") and "patches/s" in line for line in table)
    assert any(line.startswith("pipeline") and "bare loop" in line and "triplets/s" in line for line in table)
    assert any(line.startswith("pipeline") and "Ray pipeline" in line and "x bare" in line for line in table)
