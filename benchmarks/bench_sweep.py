"""Benchmark: a 240-run sweep with `linrep sweep` vs the same runs one by one in plain PyTorch.

The sweep is configs/sweep_architecture.toml: independent vs coupled concepts (Ising with J = 0 or
J_ij ~ N(0, 1), fields h_i ~ N(0, 1)) × f ∈ {free, linear, mlp(64)} × d ∈ {8, 16, 32, 64} × 10
seeds; m = 4, all 81 contexts, exact objective, full-batch GD lr 1, 20k steps, init sd 0.1.

* linrep: `run_sweep` on a local Ray instance with --max-parallel workers (default 2 = this
  machine's cores), 10 seeds of each setting packed into one batched ensemble per Ray task.
  Timed end to end: Ray start-up, training, results table (geometry metrics off, so both sides do
  the same work: training plus the final loss).
* naive: a straightforward per-run loop — nn.Parameter tensors, autograd, torch.optim.SGD, one run
  at a time in this process, with ONE torch thread (its fastest setting for these tiny matrices:
  on this shared 2-core machine torch's default 2 threads made it 10-20× slower, so one thread is
  the fair baseline; --naive-threads changes it). Since linrep uses --max-parallel cores and the
  naive loop one, the output also gives the ratio per core. 240 × 20k steps takes too long to run in
  full here, so by default it times a random subset — `--naive-per-setting` seeds (default 1,
  drawn with numpy seed 0) of each of the 24 settings — and extrapolates: estimated total =
  Σ_settings (mean time of its timed runs) × 10 seeds. The output says so explicitly; pass
  `--naive-per-setting 10` to time every run.

Usage:
    nice python benchmarks/bench_sweep.py                 # full benchmark (~10-20 min on 2 cores)
    python benchmarks/bench_sweep.py --steps 200 --quick  # smoke test of the script
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from record import Recorder

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ROOT / "configs" / "sweep_architecture.toml"


def one_hot(contexts: np.ndarray) -> np.ndarray:
    """x(ξ) ∈ {0,1}^{3m}: for concept i, slot 3i = ⋄, 3i+1 = value 0, 3i+2 = value 1."""
    n, m = contexts.shape
    x = np.zeros((n, 3 * m), dtype=np.float32)
    for i in range(m):
        x[np.arange(n), 3 * i + (contexts[:, i].astype(int) + 1)] = 1.0
    return x


def naive_run(
    latent,
    encoder: str,
    d: int,
    seed: int,
    steps: int,
    lr: float = 1.0,
    init: float = 0.1,
    width: int = 64,
) -> float:
    """Train one run the straightforward way; return its final excess loss (nats)."""
    torch.manual_seed(seed)
    P = torch.tensor(latent.p_next, dtype=torch.float32)
    w = torch.tensor(latent.weights, dtype=torch.float32)[:, None]
    X = torch.tensor(one_hot(latent.contexts))
    n, V = P.shape
    g = torch.nn.Parameter(torch.randn(V, d) * init)
    if encoder == "free":
        F = torch.nn.Parameter(torch.randn(n, d) * init)
        params = [F, g]

        def f():
            return F
    elif encoder == "linear":
        W = torch.nn.Parameter(torch.randn(X.shape[1], d) * init)
        params = [W, g]

        def f():
            return X @ W
    else:
        W1 = torch.nn.Parameter(torch.randn(X.shape[1], width) * math.sqrt(2.0 / X.shape[1]))
        b1 = torch.nn.Parameter(torch.zeros(width))
        W2 = torch.nn.Parameter(torch.randn(width, d) * init)
        params = [W1, b1, W2, g]

        def f():
            return torch.relu(X @ W1 + b1) @ W2

    opt = torch.optim.SGD(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        logp = torch.log_softmax(f() @ g.T, dim=1)
        loss = -(w * P * logp).sum()
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss = -(w * P * torch.log_softmax(f() @ g.T, dim=1)).sum()
    return float(loss) - latent.entropy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20000, help="GD steps per run (default 20000)")
    ap.add_argument("--max-parallel", type=int, default=2, help="Ray workers (default 2)")
    ap.add_argument(
        "--naive-per-setting",
        type=int,
        default=1,
        help="seeds timed per setting on the naive side (1..10; default 1)",
    )
    ap.add_argument("--naive-threads", type=int, default=1, help="torch threads of the naive loop")
    ap.add_argument("--quick", action="store_true", help="2 seeds, for a smoke test")
    ap.add_argument("--out", type=Path, default=None, help="sweep output folder (default: temp)")
    ap.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write the numbers here (default: benchmarks/results)",
    )
    args = ap.parse_args()
    rec = Recorder("bench_sweep", args.json)

    from linrep.config import load_toml
    from linrep.latent import LatentModel
    from linrep.sweep import make_groups, run_sweep, sweep_from_dict

    raw = load_toml(SWEEP)
    raw["train"]["steps"] = args.steps
    raw["sweep"]["geometry"] = False
    if args.quick:
        raw["sweep"]["seeds"] = 2
    spec = sweep_from_dict(raw, path=SWEEP)
    n_seeds = len({r.seed for r in spec.runs})
    groups = make_groups(spec.runs, spec.sweep.max_group_size)
    print(
        f"sweep: {len(spec.runs)} runs = {len(groups)} settings × {n_seeds} seeds, "
        f"{args.steps} GD steps each, m = 4 (81 contexts, 16 tokens)"
    )
    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}")

    # ---------------------------------------------------------------- linrep sweep
    with tempfile.TemporaryDirectory() as tmp:
        out = args.out or Path(tmp) / "sweep"
        t0 = time.perf_counter()
        res = run_sweep(spec, out, max_parallel=args.max_parallel, progress=True, report=False)
        t_linrep = time.perf_counter() - t0
        rows = {r["run_id"]: r for r in res.rows}
    if res.n_failed or res.n_skipped:
        print(f"note: {res.n_failed} failed, {res.n_skipped} skipped (already in --out)")
    print(
        f"linrep sweep: {t_linrep:.1f} s for {len(spec.runs)} runs "
        f"({len(groups)} Ray tasks, --max-parallel {args.max_parallel})"
    )

    # ---------------------------------------------------------------- naive per-run loop
    rng = np.random.default_rng(0)
    torch.set_num_threads(args.naive_threads)
    k = min(max(args.naive_per_setting, 1), n_seeds)
    est_total, t_timed, n_timed, diffs, per_core = 0.0, 0.0, 0, [], []
    for gi, grp in enumerate(groups):
        chosen = rng.choice(len(grp.runs), size=k, replace=False)
        cfg = grp.runs[0].config
        latent = LatentModel.from_config(cfg["latent"])
        enc, d = cfg["model"]["encoder"], cfg["model"]["d"]
        times = []
        for j in chosen:
            run = grp.runs[int(j)]
            t0 = time.perf_counter()
            ex = naive_run(latent, enc, d, run.seed, args.steps)
            times.append(time.perf_counter() - t0)
            diffs.append((ex, rows[run.run_id].get("excess_loss")))
        est_total += float(np.mean(times)) * len(grp.runs)
        t_timed += sum(times)
        n_timed += len(times)
        # linrep's cost per run inside its ensemble: the task's wall time / K (one core)
        lin = rows[grp.runs[0].run_id].get("wall_time_s") or float("nan")
        per_core.append(float(np.mean(times)) / lin)
        print(
            f"  [{gi + 1:2d}/{len(groups)}] {grp.runs[0].case:>11s} {enc:>6s} d={d:<3d}"
            f" naive {np.mean(times):6.2f} s/run (timed {len(times)} of {len(grp.runs)}),"
            f" linrep {lin:6.3f} s/run in its K={len(grp.runs)} ensemble"
            f" -> {per_core[-1]:5.1f}x per core",
            flush=True,
        )
    exact = n_timed == len(spec.runs)
    ratio = est_total / t_linrep
    print()
    print(
        f"naive per-run PyTorch loop: timed {n_timed} of {len(spec.runs)} runs in {t_timed:.1f} s"
    )
    if exact:
        print(f"naive total (all runs timed): {est_total:.1f} s")
    else:
        print(
            f"naive total EXTRAPOLATED from a random subset ({k} of {n_seeds} seeds per "
            f"setting, × {n_seeds}): {est_total:.1f} s"
        )
    print(f"linrep sweep total (measured):  {t_linrep:.1f} s")
    print(
        f"speed-up naive / linrep: {ratio:.1f}×" + ("" if exact else " (naive side extrapolated)")
    )
    core_ratio = ratio * args.naive_threads / args.max_parallel
    print(
        f"per core (naive loop on {args.naive_threads} thread(s), linrep on {args.max_parallel} "
        f"Ray workers): {core_ratio:.1f}× end to end; per-setting median of naive s/run over "
        f"linrep's ensemble s/run (one core each, Ray start-up excluded): "
        f"{np.nanmedian(per_core):.1f}× (range {np.nanmin(per_core):.1f}–{np.nanmax(per_core):.1f})"
    )
    ex_naive = np.array([a for a, _ in diffs])
    ex_lin = np.array([b for _, b in diffs if b is not None], dtype=float)
    print(
        f"sanity: mean final excess loss on the timed runs: naive {ex_naive.mean():.3e}, "
        f"linrep {ex_lin.mean():.3e} nats (different init RNG streams, same problem)"
    )
    rec.update(
        runs=len(spec.runs),
        steps=args.steps,
        max_parallel=args.max_parallel,
        linrep_s=t_linrep,
        naive_s=est_total,
        naive_extrapolated=not exact,
        naive_timed_runs=n_timed,
        ratio=ratio,
        ratio_per_core=core_ratio,
        per_setting_ratio_median=float(np.nanmedian(per_core)),
        naive_threads=args.naive_threads,
    )
    rec.write()
    return 0


if __name__ == "__main__":
    sys.exit(main())
