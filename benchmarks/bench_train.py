"""Benchmarks of the learner (issue 4). Prints ratios measured in this one run; nothing is asserted.

1. Ensemble vs naive loop: the same 40 runs (m ∈ {4, 5}, d = 32, linear and MLP(64) encoders,
   10 seeds, 20k full-batch GD steps, lr 1, exact objective) trained by ``linrep.learn.fit`` (one
   batched ensemble of 10 seeds per (m, encoder)) and by a straightforward PyTorch loop, one run at a
   time (nn.Parameter + autograd + torch.optim.SGD + log_softmax cross-entropy). Target: ≥ 20×.
   Both sides run with ``--threads`` torch threads (default 1: fit's automatic choice at this size
   and the naive loop's fastest setting here). ``--naive-runs N`` times N/4 of the 10 naive runs of
   each (m, encoder) and extrapolates linearly (printed as such).
   Two ceilings of the ratio are printed, measured in the same run: naive time over (a) the time
   linrep's own step spends inside its matmul and softmax kernels (torch profiler), i.e. the ratio if
   all other work and all per-op overhead were free, and (b) the step's matmul FLOPs at the rate of
   a plain 2048³ matmul.
2. FLOP/s of one training step at m = 8 (6561 contexts, 256 tokens), d = 64, linear encoder, as a
   fraction of the FLOP/s of a plain float32 matmul (2048³) measured in the same run, same threads.
   FLOPs counted: the five matmuls of the step actually performed (linrep computes the logits as
   x (W gᵀ) when that is cheaper, see ``linrep.learn.losses.factored_head_loss``; the plain
   association (x W) gᵀ is timed too); softmax/elementwise work is not counted. Target: ≥ 30 %.

3. End to end: ``linrep train configs/train_linear.toml --seeds 0-9`` (start-up, data, 10 runs as
   one ensemble, results written; ``train.workers`` 1 and 2) against a per-run PyTorch script doing
   the same 10 runs one at a time, both timed as fresh processes from launch to exit. Target ≥ 20×.
   Part 1 also prints each group's FLOP rate over the whole run as a fraction of a plain matmul's.

Usage:  python benchmarks/bench_train.py [--steps 20000] [--naive-runs 40] [--threads 1]
                                        [--workers 1] [--skip-ensemble] [--skip-flops]
                                        [--skip-end-to-end]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time

import numpy as np
import torch

from linrep.latent import LatentModel
from linrep.learn import ModelConfig, TrainConfig, fit
from record import Recorder, linrep_command


def naive_run(lat: LatentModel, encoder: str, seed: int, steps: int, d: int = 32) -> float:
    """One run the straightforward way; returns the final cross-entropy."""
    torch.manual_seed(seed)
    m = lat.m
    x = np.zeros((lat.n_contexts, 3 * m), dtype=np.float32)
    for i, ctx in enumerate(lat.contexts):
        for c, v in enumerate(ctx):
            x[i, 3 * c + (2 if v < 0 else int(v))] = 1.0
    x = torch.from_numpy(x)
    target = torch.as_tensor(lat.weights[:, None] * lat.p_next, dtype=torch.float32)
    g = torch.nn.Parameter(0.1 * torch.randn(lat.n_tokens, d))
    if encoder == "linear":
        enc = torch.nn.Linear(3 * m, d, bias=False)
        torch.nn.init.normal_(enc.weight, std=0.1)
    else:
        enc = torch.nn.Sequential(
            torch.nn.Linear(3 * m, 64), torch.nn.ReLU(), torch.nn.Linear(64, d, bias=False)
        )
        torch.nn.init.normal_(enc[2].weight, std=0.1)
    opt = torch.optim.SGD([g, *enc.parameters()], lr=1.0)
    loss = torch.tensor(0.0)
    for _ in range(steps):
        opt.zero_grad()
        logits = enc(x) @ g.T
        loss = -(target * torch.log_softmax(logits, dim=1)).sum()
        loss.backward()
        opt.step()
    return float(loss.detach())


def ensemble_step_flops(lat: LatentModel, enc: str, K: int, d: int = 32, w: int = 64) -> int:
    """Matmul FLOPs of one ensemble step on linrep's (factored) path: z = H (W gᵀ) and backward."""
    n, V, h = lat.n_contexts, lat.n_tokens, 3 * lat.m
    if enc == "linear":  # A = W gᵀ, z = x A, ∂A = (r x)ᵀ e, ∂W = ∂A g, ∂g = ∂Aᵀ W
        mac = 3 * h * d * V + 2 * n * h * V
    else:  # layer 1 and its ∂W, then z = H A, ∂A, ∂H (width w) and A, ∂W_out, ∂g
        mac = 2 * n * h * w + 3 * n * w * V + 3 * w * d * V
    return 2 * K * mac


def matmul_gflops() -> float:
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b
    return 3 * 2 * 2048**3 / (time.perf_counter() - t0) / 1e9


@contextlib.contextmanager
def _quiet_stderr():
    """Silence file descriptor 2 (C++ logging that Python's sys.stderr does not see)."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def kernel_seconds_per_step(lat: LatentModel, enc: str, K: int, steps: int = 200) -> float:
    """Seconds per ensemble step that linrep's own step spends inside its matmul and softmax
    kernels (torch profiler self time of aten::bmm, baddbmm, _softmax): the step's cost if every
    other op, the optimiser and all Python and dispatch overhead were free."""
    from torch.profiler import profile

    from linrep.learn.model import BatchedModel
    from linrep.learn.objective import Targets
    from linrep.learn.optim import BatchedOptimizer

    mc, tc = ModelConfig(encoder=enc, d=32, width=64, depth=1), TrainConfig()
    model = BatchedModel(mc, lat.contexts, lat.n_tokens, torch.float32)
    theta = model.init(list(range(K)), [mc] * K)
    target = Targets(lat, [tc] * K, torch.float32).full()
    opt = BatchedOptimizer([tc] * K, model.P, torch.float32)
    buf = torch.empty_like(theta)
    with torch.no_grad():
        for t in range(20):
            opt.step(theta, model.grad(theta, "cross_entropy", target, out=buf), t)
        with _quiet_stderr(), profile() as prof:  # the profiler logs start/stop lines to fd 2
            for t in range(steps):
                opt.step(theta, model.grad(theta, "cross_entropy", target, out=buf), t)
    kernels = ("aten::bmm", "aten::baddbmm", "aten::_softmax")
    us = sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in kernels)
    return us * 1e-6 / steps


def bench_ensemble(
    steps: int, naive_runs: int, threads: int, rec: Recorder, workers: int = 1
) -> None:
    print(
        f"== 1. 40 runs (m in {{4,5}}, linear+mlp, 10 seeds, {steps} GD steps, exact): "
        f"ensemble vs naive, {threads} thread(s) for both, linrep train.workers = {workers}; "
        + "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    )
    peak = matmul_gflops()  # the plain-matmul rate every group's FLOP rate is held against
    lats = {m: LatentModel.from_config({"m": m}) for m in (4, 5)}
    cases = [(m, enc) for m in (4, 5) for enc in ("linear", "mlp")]
    per_case = max(1, min(10, naive_runs // len(cases)))
    t_ens = t_naive = t_kernels = flops = 0.0
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    # warm-up (lazy imports, first-call allocations) outside the timings, for both sides
    fit(
        lats[4], {"encoder": "mlp"}, {"steps": 20, "threads": threads}, seeds=[0, 1], progress=False
    )
    naive_run(lats[4], "mlp", 0, 20)
    for m, enc in cases:
        t0 = time.perf_counter()
        res = fit(
            lats[m],
            ModelConfig(encoder=enc, d=32, width=64, depth=1),
            TrainConfig(
                steps=steps,
                lr=1.0,
                log_every=max(1, steps // 10),
                threads=threads,
                workers=workers,
            ),
            seeds=range(10),
            progress=False,
        )
        dt = time.perf_counter() - t0
        torch.set_num_threads(threads)
        ex = np.mean([r["excess_loss"] for r in res.final])
        fl = ensemble_step_flops(lats[m], enc, 10) * steps
        kern = kernel_seconds_per_step(lats[m], enc, 10) * steps
        t0 = time.perf_counter()
        for s in range(per_case):
            naive_run(lats[m], enc, s, steps)
        dn = (time.perf_counter() - t0) * 10 / per_case
        t_ens += dt
        t_naive += dn
        t_kernels += kern
        flops += fl
        rec[f"ensemble_m{m}_{enc}"] = {
            "linrep_s": dt,
            "naive_s": dn,
            "ratio": dn / dt,
            "flop_fraction_of_matmul": fl / dt / 1e9 / (peak * workers),
        }
        print(
            f"  m={m} {enc:6s}: linrep K=10 {dt:7.2f} s (mean excess {ex:.1e}, {fl / dt / 1e9:5.1f} "
            f"GFLOP/s over the whole run = {100 * fl / dt / 1e9 / (peak * workers):4.1f} % of "
            f"{workers} plain matmul(s)) | naive 10 runs {dn:7.2f} s"
            f"{'' if per_case == 10 else f' ({per_case} timed, x{10 / per_case:g})'}"
            f" | ratio {dn / dt:5.1f}x | linrep's matmul+softmax kernels alone {kern:6.2f} s"
        )
    t_peak = flops / peak / 1e9
    rec.update(
        ensemble_linrep_s=t_ens,
        ensemble_naive_s=t_naive,
        ensemble_ratio=t_naive / t_ens,
        ensemble_kernel_ceiling=t_naive / t_kernels,
        threads=threads,
        steps=steps,
    )
    print(f"  linrep ensembles total: {t_ens:8.2f} s")
    print(f"  naive per-run total   : {t_naive:8.2f} s")
    print(f"  RATIO naive / linrep  : {t_naive / t_ens:8.1f}x   (target >= 20x)")
    print(
        "  ceilings of that ratio here (naive total / a lower bound on linrep's time):\n"
        f"    linrep's step reduced to its matmul and softmax kernels ({t_kernels:6.2f} s): "
        f"{t_naive / t_kernels:5.1f}x\n"
        f"    its matmul FLOPs ({flops / 1e9:.0f} GFLOP) at the rate of a plain 2048^3 matmul "
        f"({peak:.0f} GFLOP/s, {t_peak:.2f} s): {t_naive / t_peak:5.1f}x"
    )
    torch.set_num_threads(old_threads)


def step_flops(model, n: int, V: int, d: int, h: int) -> int:
    """Multiply-add FLOPs (2 per MAC) of the matmuls of one training step of the linear encoder."""
    if model.factored:  # A = W gᵀ, z = x A, ∂A = xᵀ ∂z, ∂W = ∂A g, ∂g = ∂Aᵀ W
        return 2 * (3 * h * d * V + 2 * n * h * V)
    return 2 * (3 * n * V * d + 2 * n * h * d)  # f = x W, z = f gᵀ, ∂f, ∂g, ∂W


def bench_flops(rec: Recorder, repeats: int = 20) -> None:
    print("== 2. FLOP/s of one training step at m = 8, d = 64 (linear f) vs a plain float32 matmul")
    from linrep.learn.model import BatchedModel
    from linrep.learn.objective import Targets
    from linrep.learn.optim import BatchedOptimizer
    from linrep.learn.trainer import SMALL_WORK

    lat = LatentModel.from_config({"m": 8})
    n, V, d, m = lat.n_contexts, lat.n_tokens, 64, 8
    default_threads = torch.get_num_threads()
    auto = 1 if n * V * d < SMALL_WORK else default_threads  # what fit() would use
    for threads in sorted({auto, default_threads}):
        torch.set_num_threads(threads)
        for factored in (True, False):
            mc, tc = ModelConfig(encoder="linear", d=d), TrainConfig()
            model = BatchedModel(mc, lat.contexts, V, torch.float32)
            model.factored = factored
            theta = model.init([0], [mc])
            target = Targets(lat, [tc], torch.float32).full()
            opt = BatchedOptimizer([tc], model.P, torch.float32)
            with torch.no_grad():
                for t in range(3):
                    grad = model.grad(theta, "cross_entropy", target)
                    opt.step(theta, grad, t)
                t0 = time.perf_counter()
                for t in range(repeats):
                    grad = model.grad(theta, "cross_entropy", target)
                    opt.step(theta, grad, t)
                dt_step = (time.perf_counter() - t0) / repeats
            flops_step = step_flops(model, n, V, d, 3 * m)
            a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
            a @ b
            t0 = time.perf_counter()
            for _ in range(5):
                a @ b
            dt_mm = (time.perf_counter() - t0) / 5
            fs, fm = flops_step / dt_step, 2 * 2048**3 / dt_mm
            tag = (
                "factored logits x(Wg^T) [linrep's choice]" if factored else "plain logits (xW)g^T"
            )
            if factored != model.factored:
                tag += " [forced]"
            if factored and threads == auto:  # what fit() runs: factored logits, its threads
                rec["step_flop_fraction_m8"] = fs / fm
            print(f"  threads {threads}{' (fit default)' if threads == auto else ''}, {tag}:")
            print(
                f"    step {dt_step * 1e3:7.2f} ms, {flops_step / 1e6:6.1f} MFLOP -> {fs / 1e9:6.2f} GFLOP/s;"
                f" matmul 2048^3 {fm / 1e9:6.2f} GFLOP/s;  RATIO {100 * fs / fm:5.1f} %  (target >= 30 %)"
            )
    torch.set_num_threads(default_threads)


NAIVE_SCRIPT = """
import sys, time
import numpy as np, torch
from linrep.latent import LatentModel
torch.set_num_threads(1)
lat = LatentModel.from_config({"m": 4})
x = np.zeros((lat.n_contexts, 12), dtype=np.float32)
for i, ctx in enumerate(lat.contexts):
    for c, v in enumerate(ctx):
        x[i, 3 * c + (2 if v < 0 else int(v))] = 1.0
x = torch.from_numpy(x)
target = torch.as_tensor(lat.weights[:, None] * lat.p_next, dtype=torch.float32)
steps = int(sys.argv[1])
for seed in range(int(sys.argv[2])):
    torch.manual_seed(seed)
    g = torch.nn.Parameter(0.1 * torch.randn(lat.n_tokens, 32))
    enc = torch.nn.Linear(12, 32, bias=False)
    torch.nn.init.normal_(enc.weight, std=0.1)
    opt = torch.optim.SGD([g, *enc.parameters()], lr=1.0)
    for _ in range(steps):
        opt.zero_grad()
        loss = -(target * torch.log_softmax(enc(x) @ g.T, dim=1)).sum()
        loss.backward()
        opt.step()
"""


def bench_end_to_end(steps: int, naive_runs: int, rec: Recorder) -> None:
    """`linrep train configs/train_linear.toml --seeds 0-9` vs a per-run PyTorch script, both as
    fresh processes timed from launch to exit (start-up, data, training, writing results)."""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "configs" / "train_linear.toml"
    print(
        f"== 3. end to end: linrep train {cfg.name} --seeds 0-9 ({steps} GD steps, m = 4, linear) "
        "vs a per-run PyTorch script, wall time from launch to exit; "
        + "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    )

    def wall(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t0

    startup = min(wall([sys.executable, "-c", "import torch, linrep.cli"]) for _ in range(2))
    per = max(1, min(10, naive_runs))
    naive = wall([sys.executable, "-c", NAIVE_SCRIPT, str(steps), str(per)])
    naive_10 = startup + (naive - startup) * 10 / per
    print(
        f"  python + torch + linrep.cli import alone: {startup:5.2f} s; per-run PyTorch script, "
        f"10 runs: {naive_10:6.2f} s"
        + ("" if per == 10 else f" ({per} runs timed, training time x{10 / per:g})")
    )
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            cmd = linrep_command(
                "train", cfg, "--out", f"{tmp}/o", "--seeds", "0-9", "--quiet",
                "--set", f"train.steps={steps}", "--set", f"train.workers={workers}",
            )  # fmt: skip
            dt = wall(cmd)
        rec[f"end_to_end_workers{workers}"] = {
            "linrep_s": dt,
            "naive_s": naive_10,
            "ratio": naive_10 / dt,
            "startup_s": startup,
        }
        print(
            f"  linrep train --seeds 0-9, train.workers = {workers}: {dt:6.2f} s -> RATIO "
            f"{naive_10 / dt:5.1f}x (target >= 20x); ceiling if linrep cost only its start-up: "
            f"{naive_10 / startup:5.1f}x"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--naive-runs", type=int, default=40, help="naive runs to time (of 40)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads for both sides of benchmark 1 (1 = fit's automatic choice here)",
    )
    ap.add_argument("--workers", type=int, default=1, help="linrep's train.workers in part 1")
    ap.add_argument("--skip-ensemble", action="store_true")
    ap.add_argument("--skip-flops", action="store_true")
    ap.add_argument("--skip-end-to-end", action="store_true")
    args = ap.parse_args()
    rec = Recorder("bench_train")
    if not args.skip_flops:
        bench_flops(rec)
    if not args.skip_ensemble:
        bench_ensemble(args.steps, args.naive_runs, args.threads, rec, args.workers)
    if not args.skip_end_to_end:
        bench_end_to_end(args.steps, args.naive_runs, rec)
    rec.write()


if __name__ == "__main__":
    main()
