"""The benchmark scripts stay runnable (tiny sizes; their timings are not checked here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_bench_train_runs_and_reports_its_ratios():
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench_train.py"), "--steps", "20", "--naive-runs", "4"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    assert "RATIO naive / linrep" in out
    assert "linrep's step reduced to its matmul and softmax kernels" in out
    assert "(fit default), factored logits" in out  # the FLOP/s part, on fit's own path


def test_bench_transformer_runs_and_reports_its_ratio():
    out = subprocess.run(
        [sys.executable, str(BENCH / "bench_transformer.py"), "--rounds", "1", "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    assert out.count("RATIO previous / linrep") == 2  # train_transformer.toml and E4's setting
    assert "same math" in out and "load average" in out
