"""The learner at a real vocabulary's size, held against its own arithmetic (issue 13).

For m = 10, 12, …, 18 (V = 2^m tokens) at d = 64: one table-free training step (sampled objective,
batch 256, linear encoder, Adam) — its time and the process's peak memory — next to the FLOOR: the
step's own three matmuls (z = f gᵀ, ∂g = eᵀ f, ∂f = e g; (256 × 64) × (64 × V) each) run alone in
plain torch, same shapes, same threads, same process, measured right after the step. Each m runs in
its own subprocess, so peak memory is that m's alone. Prints the ratio step / floor (target ≤ 1.5
at m ≥ 14) and time and memory per token (linear in V ⇔ constant per token).

``--train`` also times the issue's end-to-end run, ``linrep train configs/train_scale.toml`` (m = 18,
100 Adam steps), as a subprocess: wall time, the training loop's time, the floor of its matmuls
(100 steps plus the two held-out evaluations) and peak memory (target: ≤ 2.5× the floor plus
start-up, < 4 GB), and the same run at m = 16 (about a quarter).

The machine's load average is printed beside every timing: on a shared machine re-run when quiet.

Usage:  python benchmarks/bench_scale.py [--ms 10 12 14 16 18] [--steps 10] [--train]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import Recorder, linrep_command

D, B = 64, 256


def _load() -> str:
    return "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())


def one(m: int, steps: int) -> dict:
    """Time the step and its matmul floor at this m (run in a fresh process)."""
    import torch

    from linrep.latent import LatentModel
    from linrep.learn.config import ModelConfig, TrainConfig
    from linrep.learn.trainer import Training, _threads

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    lat = LatentModel.from_config({"m": m, "contexts": "sampled", "n_contexts": 4096})
    mc = ModelConfig(encoder="linear", d=D)
    tc = TrainConfig(
        objective="sampled",
        optimizer="adam",
        lr=0.01,
        batch_size=B,
        steps=steps + 3,
        n_samples=20000,
    )
    threads = _threads(lat, [mc], [tc])
    torch.set_num_threads(1)  # as fit: one thread, `threads` inside the step's wide kernels
    t0 = time.perf_counter()
    with torch.no_grad():
        run = Training(lat, [mc], [tc], [], None, progress=False)
        run.model.wide_threads = threads
        setup = time.perf_counter() - t0
        buf = torch.empty_like(run.theta)
        for t in range(3):
            run.step(t, buf)
        t0 = time.perf_counter()
        for t in range(3, steps + 3):
            run.step(t, buf)
        step = (time.perf_counter() - t0) / steps
        # the floor: the same three matmuls, plain torch, same shapes and threads
        V = lat.n_tokens
        torch.set_num_threads(threads)
        f, g, e = torch.randn(B, D), torch.randn(V, D), torch.randn(B, V)
        z = torch.empty(B, V)
        torch.mm(f, g.T, out=z)
        t0 = time.perf_counter()
        for _ in range(steps):
            torch.mm(f, g.T, out=z)
            torch.mm(e.T, f)
            torch.mm(e, g)
        floor = (time.perf_counter() - t0) / steps
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "m": m,
        "V": lat.n_tokens,
        "threads": threads,
        "setup_s": setup,
        "step_ms": step * 1e3,
        "floor_ms": floor * 1e3,
        "peak_MB": peak / 1024,
        "peak_above_imports_MB": (peak - rss0) / 1024,
        "load": os.getloadavg()[0],
    }


def bench_steps(ms: list[int], steps: int, rec: Recorder) -> None:
    print(
        f"== step vs its matmul floor (d = {D}, batch {B}, linear f, Adam, table-free); {_load()}"
    )
    print(
        f"{'m':>3} {'V':>8} {'thr':>3} {'step ms':>9} {'floor ms':>9} {'ratio':>6} "
        f"{'ns/token':>9} {'peak MB':>8} {'MB above imports':>17} {'KB/token':>9} {'load':>5}"
    )
    rows = []
    for m in ms:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(m), "--steps", str(steps)],
            capture_output=True,
            text=True,
            check=True,
        )
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        rec[f"m{m}"] = {**r, "ratio": r["step_ms"] / r["floor_ms"]}
        print(
            f"{r['m']:>3} {r['V']:>8} {r['threads']:>3} {r['step_ms']:>9.1f} {r['floor_ms']:>9.1f} "
            f"{r['step_ms'] / r['floor_ms']:>6.2f} {r['step_ms'] * 1e6 / r['V']:>9.1f} "
            f"{r['peak_MB']:>8.0f} {r['peak_above_imports_MB']:>17.0f} "
            f"{r['peak_above_imports_MB'] * 1024 / r['V']:>9.2f} {r['load']:>5.1f}",
            flush=True,
        )
    big = [r for r in rows if r["m"] >= 14]  # below, fixed costs (imports, the context set) lead
    if len(big) > 1:
        import numpy as np

        V = np.array([r["V"] for r in big], float)
        for key, label in (("step_ms", "time"), ("peak_above_imports_MB", "memory")):
            y = np.array([r[key] for r in big], float)
            slope = np.polyfit(np.log(V), np.log(y), 1)[0]
            rec[f"{label}_slope"] = float(slope)
            print(f"  {label} ∝ V^{slope:.2f} over V = {int(V[0])}…{int(V[-1])} (1.00 = linear)")
        if big:
            worst = max(r["step_ms"] / r["floor_ms"] for r in big)
            rec["worst_ratio_m14plus"] = worst
            print(f"  worst step/floor at m >= 14: {worst:.2f} (target <= 1.5)")


def bench_train(m: int, rec: Recorder) -> None:
    """``linrep train configs/train_scale.toml`` end to end at this m, against its matmul floor."""
    cfg = Path(__file__).resolve().parents[1] / "configs" / "train_scale.toml"
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        cmd = linrep_command(
            "train", cfg, "--out", out, "--quiet", "--set", f"latent.m={m}"
        )  # fmt: skip
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True, check=True
        )
        wall = time.perf_counter() - t0
        peak_mb = int(proc.stderr.strip().splitlines()[-1]) / 1024
        metrics = json.loads((out / "metrics.json").read_text())
        loop = metrics["train_seconds"]
        geo = metrics.get("geometry", {})
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import linrep.cli, torch"], check=True)
    startup = time.perf_counter() - t0
    r = json.loads(
        subprocess.run(
            [sys.executable, __file__, "--one", str(m), "--steps", "5"],
            capture_output=True,
            text=True,
            check=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    n_eval = 512  # held-out contexts (train.eval_contexts automatic)
    floor = 100 * r["floor_ms"] / 1e3 + 2 * (n_eval / B) * (r["floor_ms"] / 3) / 1e3
    rec[f"train_m{m}"] = {
        "wall_s": wall,
        "startup_s": startup,
        "loop_s": loop,
        "floor_s": floor,
        "loop_over_floor": loop / floor,
        "wall_minus_startup_over_floor": (wall - startup) / floor,
        "peak_MB": peak_mb,
        "same_concept_cosine": geo.get("same_concept_cosine", {}).get("mean"),
        "cross_concept_abs_cosine": geo.get("cross_concept_abs_cosine", {}).get("mean"),
    }
    print(
        f"  m={m}: wall {wall:6.1f} s (python+torch start-up {startup:.1f} s), training loop "
        f"{loop:6.1f} s, matmul floor {floor:6.1f} s -> loop/floor {loop / floor:4.2f}, "
        f"(wall - start-up)/floor {(wall - startup) / floor:4.2f} (target <= 2.5); peak "
        f"{peak_mb:6.0f} MB (target < 4096); metrics.json same-concept "
        f"{geo.get('same_concept_cosine', {}).get('mean', float('nan')):.3f}, cross-concept "
        f"{geo.get('cross_concept_abs_cosine', {}).get('mean', float('nan')):.3f}; {_load()}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ms", type=int, nargs="+", default=[10, 12, 14, 16, 18])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--train", action="store_true", help="also time linrep train at m = 18, 16")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one is not None:
        print(json.dumps(one(args.one, args.steps)))
        return
    rec = Recorder("bench_scale")
    bench_steps(args.ms, args.steps, rec)
    if args.train:
        print(f"== linrep train configs/train_scale.toml (100 Adam steps, batch {B}, d {D})")
        for m in (18, 16):
            bench_train(m, rec)
    rec.write()


if __name__ == "__main__":
    main()
