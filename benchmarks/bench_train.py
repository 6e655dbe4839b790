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
   Every group's step time is split by the profiler's op categories (:func:`classify`): inside
   matmul kernels, inside element-wise and reduction kernels (softmax, q − P, ReLU and its
   backward, sums, copies), and the rest, per-call overhead (Python, dispatch, view and metadata
   ops, waits); the group is labelled by the largest share. Recorded with the FLOP rate the
   matmul kernels reach at their own shapes as a fraction of the plain matmul's, which bounds the
   whole-run fraction from above.
2. FLOP/s of one training step at m = 8 (6561 contexts, 256 tokens), d = 64, linear encoder, as a
   fraction of the FLOP/s of a plain float32 matmul (2048³) measured in the same run, same threads.
   FLOPs counted: the five matmuls of the step actually performed (linrep computes the logits as
   x (W gᵀ) when that is cheaper, see ``linrep.learn.losses.factored_head_loss``; the plain
   association (x W) gᵀ is timed too); softmax/elementwise work is not counted. Target: ≥ 30 %.

3. End to end: ``linrep train configs/train_linear.toml --seeds 0-9`` (start-up, data, 10 runs as
   one ensemble, results written; ``train.workers`` 1 and 2) against a per-run PyTorch script doing
   the same 10 runs one at a time, both timed as fresh processes from launch to exit. Target ≥ 20×.
   Printed and recorded next to the ratio, its ceilings measured in the same run: naive / start-up
   alone (python + torch + linrep.cli), and naive / (start-up + linrep's own matmul and softmax
   kernels for the whole run, from the profiler as in part 1).
   Part 1 also prints each group's FLOP rate over the whole run as a fraction of a plain matmul's.
4. A compute-bound group (:data:`LARGE`: m = 8, 6,561 contexts, V = 256, MLP, K = 10) as one whole
   ``fit`` with fit's own thread choice: FLOP rate over the whole run (setup, evaluations and
   history included) as a fraction of a plain 2048³ matmul at the same threads. Target ≥ 60 %.
   The naive per-run loop is timed on one run (of the same steps) and extrapolated ×10, or skipped
   with ``--naive-runs`` < 40. FLOPs counted: the matmuls the step performs
   (:func:`ensemble_step_flops`), not the evaluations'.

Usage:  python benchmarks/bench_train.py [--steps 20000] [--naive-runs 40] [--threads 1]
                                        [--workers 1] [--skip-ensemble] [--skip-flops]
                                        [--skip-end-to-end] [--skip-large]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time

import numpy as np
import torch

from linrep.latent import LatentModel
from linrep.learn import ModelConfig, TrainConfig, fit
from record import Recorder, linrep_command


def naive_run(
    lat: LatentModel, encoder: str, seed: int, steps: int, d: int = 32, width: int = 64
) -> float:
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
            torch.nn.Linear(3 * m, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, d, bias=False),
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
    """Matmul FLOPs of one ensemble step on the path linrep takes: factored logits z = H (W gᵀ)
    when cheaper (``BatchedModel.factored``), else f = H W_out, z = f gᵀ (blocked or not)."""
    from linrep.learn.model import BatchedModel

    n, V, h = lat.n_contexts, lat.n_tokens, 3 * lat.m
    mc = ModelConfig(encoder=enc, d=d, width=w, depth=1)
    factored = BatchedModel(mc, lat.contexts[:1], V, torch.float32).factored
    if enc == "linear":  # A = W gᵀ, z = x A, ∂A = (r x)ᵀ e, ∂W = ∂A g, ∂g = ∂Aᵀ W
        mac = 3 * h * d * V + 2 * n * h * V if factored else 3 * n * V * d + 2 * n * h * d
    elif factored:  # layer 1 and its ∂W, then z = H A, ∂A, ∂H (width w) and A, ∂W_out, ∂g
        mac = 2 * n * h * w + 3 * n * w * V + 3 * w * d * V
    else:  # layer 1 and its ∂W; f = H W_out, ∂W_out, ∂H; z = f gᵀ, ∂f, ∂g
        mac = 2 * n * h * w + 3 * n * w * d + 3 * n * d * V
    return 2 * K * mac


def matmul_gflops(repeats: int = 3) -> float:
    """GFLOP/s of a plain float32 2048³ matmul at the current torch threads (best of 2 rounds)."""
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = float("inf")
    for _ in range(2):
        t0 = time.perf_counter()
        for _ in range(repeats):
            a @ b
        best = min(best, time.perf_counter() - t0)
    return repeats * 2 * 2048**3 / best / 1e9


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


MATMULS = (
    "aten::bmm", "aten::baddbmm", "aten::baddbmm_", "aten::mm", "aten::addmm", "aten::addmm_",
    "aten::mv", "aten::addmv_",
)  # fmt: skip
"""Profiler names of the matmul kernels of a step (self time; in-place variants included:
``baddbmm_`` into a strided sum runs as one ``addmm_`` per run)."""

VIEWS = (
    "aten::as_strided", "aten::select", "aten::slice", "aten::transpose", "aten::t",
    "aten::view", "aten::_unsafe_view", "aten::reshape", "aten::expand", "aten::unsqueeze",
    "aten::squeeze", "aten::permute", "aten::alias", "aten::detach", "aten::detach_",
    "aten::empty", "aten::empty_strided", "aten::resize_", "aten::lift_fresh", "aten::item",
    "aten::_local_scalar_dense", "aten::result_type", "aten::set_", "aten::split",
)  # fmt: skip
"""Profiler names of ops that touch no tensor data (views, metadata, allocation): counted as
per-call overhead with Python and dispatch. Every other op is an element-wise or reduction
kernel."""


def linrep_step(lat: LatentModel, mc: ModelConfig, K: int):
    """One full-batch GD ensemble step of linrep (cross-entropy, float32, default TrainConfig) for
    K runs of model ``mc``: (model, θ, target, step), where step(t) applies step t to θ in place
    (model.grad into a reused buffer, then the optimiser) — what the trainer's loop runs."""
    from linrep.learn.model import BatchedModel
    from linrep.learn.objective import Targets
    from linrep.learn.optim import BatchedOptimizer

    tc = TrainConfig()
    model = BatchedModel(mc, lat.contexts, lat.n_tokens, torch.float32)
    theta = model.init(list(range(K)), [mc] * K)
    target = Targets(lat, [tc] * K, torch.float32).full()
    opt = BatchedOptimizer([tc] * K, model.P, torch.float32)
    buf = torch.empty_like(theta)

    def step(t: int) -> None:
        opt.step(theta, model.grad(theta, "cross_entropy", target, out=buf), t)

    return model, theta, target, step


def step_profile(
    lat: LatentModel, enc: str, K: int, steps: int = 200, d: int = 32, w: int = 64
) -> dict[str, float]:
    """Where one ensemble step of linrep's (full-batch GD, cross-entropy) spends its time.

    Returns seconds per step: ``step`` (unprofiled wall time of model.grad + optimiser step),
    ``matmul`` (torch profiler self time of the matmul kernels, :data:`MATMULS`), ``softmax``
    (aten::_softmax) and ``elementwise`` (every other op but :data:`VIEWS`: softmax included);
    and ``top``, the three element-wise ops with the most time, [(name, seconds), …].
    ``matmul + softmax`` is the step's cost if every other op, the optimiser and all Python and
    dispatch overhead were free.
    """
    from torch.profiler import profile

    _, _, _, linrep = linrep_step(lat, ModelConfig(encoder=enc, d=d, width=w, depth=1), K)
    with torch.no_grad():
        for t in range(max(2, steps // 10)):
            linrep(t)
        t0 = time.perf_counter()
        for t in range(steps):
            linrep(t)
        step = (time.perf_counter() - t0) / steps
        with _quiet_stderr(), profile() as prof:  # the profiler logs start/stop lines to fd 2
            for t in range(steps):
                linrep(t)
    per_op: dict[str, float] = {}
    for e in prof.key_averages():
        if e.key.startswith("aten::"):
            per_op[e.key] = per_op.get(e.key, 0.0) + e.self_cpu_time_total * 1e-6 / steps
    elementwise = {k: v for k, v in per_op.items() if k not in MATMULS and k not in VIEWS}
    return {
        "step": step,
        "matmul": sum(v for k, v in per_op.items() if k in MATMULS),
        "softmax": per_op.get("aten::_softmax", 0.0),
        "elementwise": sum(elementwise.values()),
        "top": sorted(elementwise.items(), key=lambda kv: -kv[1])[:3],
    }


def step_vs_handwritten(lat: LatentModel, K: int, steps: int = 2000, d: int = 32):
    """Seconds per step of linrep's full-batch GD step of K linear runs (model.grad + optimiser)
    and of the same step written by hand as the fewest torch calls we found: with A = W gᵀ,
    z = x A, ∂A = (r ⊙ x)ᵀ (softmax(z) − P) as one baddbmm against the constant C = (r ⊙ x)ᵀ P,
    ∂W = ∂A g and ∂g = ∂Aᵀ W written into one flat gradient (six kernels), and θ −= lr ∂θ (its
    gradient is checked against linrep's). Each is the fastest of 10 windows of ``steps / 10``
    steps, the two alternating (the machine's speed varies within a run). Returns
    (linrep, hand-written)."""
    model, theta, target, linrep = linrep_step(lat, ModelConfig(encoder="linear", d=d), K)
    T, r, P = target
    x = model.encoder.x
    xk = x.expand(K, *x.shape).contiguous()
    xr = (r[0] * x).T.contiguous().expand(K, -1, -1).contiguous()  # (K, h, n)
    C = torch.matmul(xr, P[0])  # (K, h, V)
    theta_h, grad = theta.clone(), torch.empty_like(theta)
    p, dp = model._split(theta_h), model._split(grad)
    W, g, dW, dg = p["W"], p["g"], dp["W"], dp["g"]
    A = torch.empty(K, x.shape[1], lat.n_tokens)
    z = torch.empty(K, x.shape[0], lat.n_tokens)
    q = torch.empty_like(z)  # softmax into its own buffer: in place measured 1.3x slower
    dA = torch.empty_like(A)

    def handwritten() -> None:
        torch.bmm(W, g.transpose(1, 2), out=A)
        torch.bmm(xk, A, out=z)
        torch.softmax(z, -1, out=q)
        torch.baddbmm(C, xr, q, beta=-1, out=dA)
        torch.bmm(dA, g, out=dW)
        torch.bmm(dA.transpose(1, 2), W, out=dg)
        theta_h.sub_(grad)

    with torch.no_grad():
        ref = model.grad(theta, "cross_entropy", target)
        handwritten()
        assert torch.allclose(grad, ref, rtol=1e-4, atol=1e-6), "hand-written step: wrong gradient"
        n = max(1, steps // 10)
        best = [math.inf, math.inf]
        for w in range(11):  # window 0 warms both up
            t0 = time.perf_counter()
            for t in range(n):
                linrep(w * n + t)
            t1 = time.perf_counter()
            for _ in range(n):
                handwritten()
            t2 = time.perf_counter()
            if w:
                best = [min(best[0], (t1 - t0) / n), min(best[1], (t2 - t1) / n)]
    return best[0], best[1]


def kernel_seconds_per_step(lat: LatentModel, enc: str, K: int, steps: int = 200) -> float:
    """Seconds per ensemble step inside linrep's own matmul and softmax kernels (step_profile)."""
    prof = step_profile(lat, enc, K, steps)
    return prof["matmul"] + prof["softmax"]


def classify(prof: dict, step_flops: float, peak: float) -> dict:
    """What the step's time is spent on (:func:`step_profile`): fractions of the unprofiled step
    time inside matmul kernels, inside element-wise/reduction kernels, and the rest (per-call
    overhead: Python, dispatch, view/metadata ops, waits); ``bound`` names the largest. With the
    matmul kernels' own FLOP rate as a fraction of the plain matmul's (an upper bound on the
    whole-run fraction), and the rate over the matmul and softmax kernels together: the most a
    step could reach if every other op were fused away (the exponentials stay)."""
    step = prof["step"]
    in_mm = min(1.0, prof["matmul"] / step)
    in_ew = min(1.0 - in_mm, prof["elementwise"] / step)
    shares = {"matmul": in_mm, "element-wise": in_ew, "per-call overhead": 1.0 - in_mm - in_ew}
    return {
        "matmul_time_fraction": in_mm,
        "elementwise_time_fraction": in_ew,
        "overhead_time_fraction": shares["per-call overhead"],
        "elementwise_top": [[name.removeprefix("aten::"), t / step] for name, t in prof["top"]],
        "matmul_kernel_flop_fraction": step_flops / prof["matmul"] / 1e9 / peak,
        "matmul_softmax_flop_fraction": step_flops
        / (prof["matmul"] + prof["softmax"])
        / 1e9
        / peak,
        "bound": max(shares, key=shares.get),
    }


def bench_ensemble(
    steps: int, naive_runs: int, threads: int, rec: Recorder, workers: int = 1
) -> None:
    print(
        f"== 1. 40 runs (m in {{4,5}}, linear+mlp, 10 seeds, {steps} GD steps, exact): "
        f"ensemble vs naive, {threads} thread(s) for both, linrep train.workers = {workers}; "
        + "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    )
    lats = {m: LatentModel.from_config({"m": m}) for m in (4, 5)}
    cases = [(m, enc) for m in (4, 5) for enc in ("linear", "mlp")]
    per_case = max(1, min(10, naive_runs // len(cases)))
    t_ens = t_naive = t_kernels = flops = 0.0
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    # the plain-matmul rate every group's FLOP rate is held against, at the groups' own threads
    peak = matmul_gflops()
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
        prof = step_profile(lats[m], enc, 10)
        kern = (prof["matmul"] + prof["softmax"]) * steps
        kind = classify(prof, fl / steps, peak)
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
            **kind,
        }
        print(
            f"  m={m} {enc:6s}: linrep K=10 {dt:7.2f} s (mean excess {ex:.1e}, {fl / dt / 1e9:5.1f} "
            f"GFLOP/s over the whole run = {100 * fl / dt / 1e9 / (peak * workers):4.1f} % of "
            f"{workers} plain matmul(s)) | naive 10 runs {dn:7.2f} s"
            f"{'' if per_case == 10 else f' ({per_case} timed, x{10 / per_case:g})'}"
            f" | ratio {dn / dt:5.1f}x | linrep's matmul+softmax kernels alone {kern:6.2f} s"
        )
        print_class(kind)
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


def print_class(kind: dict) -> None:
    top = ", ".join(f"{name} {100 * f:.0f} %" for name, f in kind["elementwise_top"])
    print(
        f"      {kind['bound']}-bound: of the step, {100 * kind['matmul_time_fraction']:.1f} % "
        f"inside matmul kernels, {100 * kind['elementwise_time_fraction']:.1f} % inside "
        f"element-wise kernels ({top}), {100 * kind['overhead_time_fraction']:.1f} % per-call "
        f"overhead (Python, dispatch, views, waits); the matmul kernels reach "
        f"{100 * kind['matmul_kernel_flop_fraction']:4.1f} % of the plain matmul's rate (an upper "
        "bound on the whole-run fraction); with the softmax kernels, the most a fully fused step "
        f"could reach: {100 * kind['matmul_softmax_flop_fraction']:4.1f} %"
    )


LARGE = {"m": 8, "encoder": "mlp", "width": 256, "d": 64, "steps": 40}
"""The compute-bound group (part 4). m = 8 concepts (6,561 contexts, V = 256 tokens), an MLP of
width 256 and d = 64, 10 seeds, 40 full-batch GD steps: a researcher's sweep cell at m = 8 where
the step is ~20 GFLOP of matmuls (the head alone is 10·6561·256·64·3 multiply-adds) and softmax,
gathers and the optimiser are a few % of the arithmetic. 40 steps with a history row every 10:
a whole ``fit`` (data setup, initialisation, 5 exact evaluations over all contexts, history)
rather than a step in isolation, short enough for this benchmark's budget."""


def bench_large(rec: Recorder, naive_runs: int, steps: int) -> None:
    """Part 4: whole-run FLOP rate of the compute-bound group :data:`LARGE` (fit's own threads;
    at most ``steps`` steps)."""
    from linrep.learn.trainer import _threads

    c = {**LARGE, "steps": min(LARGE["steps"], steps)}
    lat = LatentModel.from_config({"m": c["m"]})
    mc = ModelConfig(encoder=c["encoder"], d=c["d"], width=c["width"], depth=1)
    tc = TrainConfig(steps=c["steps"], lr=1.0, log_every=10)
    threads = _threads(lat, [mc] * 10, [tc] * 10)  # what fit chooses for this size
    torch.set_num_threads(threads)
    print(
        f"== 4. compute-bound group: m={c['m']} ({lat.n_contexts} contexts, V={lat.n_tokens}), "
        f"MLP width {c['width']}, d={c['d']}, K=10, {c['steps']} GD steps as one whole fit; "
        f"{threads} thread(s) (fit's choice); "
        + "load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    )
    peak = matmul_gflops()
    fit(lat, mc, TrainConfig(steps=2, lr=1.0), seeds=range(2), progress=False)  # warm-up
    t0 = time.perf_counter()
    res = fit(lat, mc, tc, seeds=range(10), progress=False)
    dt = time.perf_counter() - t0
    step_fl = ensemble_step_flops(lat, c["encoder"], 10, c["d"], c["width"])
    fl = step_fl * c["steps"]
    # The profile runs on one thread: with more, the blocked step runs its kernels on one torch
    # thread per Python thread (BatchedModel._grad_blocked), which the profiler does not see. Its
    # kernels are then held against the one-thread matmul.
    torch.set_num_threads(1)
    prof = step_profile(lat, c["encoder"], 10, steps=5, d=c["d"], w=c["width"])
    kind = classify(prof, step_fl, matmul_gflops())
    torch.set_num_threads(threads)
    runs = max(0, min(10, naive_runs // 40))  # naive: a few runs of the same steps, extrapolated
    dn = None
    if runs:
        t1 = time.perf_counter()
        for s in range(runs):
            naive_run(lat, c["encoder"], s, c["steps"], c["d"], c["width"])
        dn = (time.perf_counter() - t1) * 10 / runs
    frac = fl / dt / 1e9 / peak
    rec["ensemble_large_mlp"] = {
        **c,
        "contexts": lat.n_contexts,
        "tokens": lat.n_tokens,
        "threads": threads,
        "load_1min": os.getloadavg()[0],
        "linrep_s": dt,
        "train_loop_s": res.seconds,
        "step_gflop": step_fl / 1e9,
        "matmul_gflops": peak,
        "flop_fraction_of_matmul": frac,
        "naive_s": dn,
        "naive_runs_timed": runs,
        "ratio": None if dn is None else dn / dt,
        **kind,
    }
    print(
        f"  linrep fit K=10: {dt:6.2f} s whole run ({res.seconds:.2f} s in the training loop), "
        f"{step_fl / 1e9:.1f} GFLOP/step of matmuls -> {fl / dt / 1e9:6.1f} GFLOP/s over the whole "
        f"run = {100 * frac:4.1f} % of a plain 2048^3 matmul ({peak:.0f} GFLOP/s, {threads} "
        "thread(s))  (target >= 60 %)"
    )
    print_class(kind)
    if dn is not None:
        print(
            f"  naive per-run PyTorch loop: 10 runs {dn:6.2f} s ({runs} timed, x{10 / runs:g}) "
            f"-> ratio {dn / dt:4.1f}x"
        )
    else:
        print("  naive per-run loop skipped (--naive-runs < 40)")


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


def bench_end_to_end(steps: int, naive_runs: int, rec: Recorder, rounds: int = 3) -> None:
    """`linrep train configs/train_linear.toml --seeds 0-9` vs a per-run PyTorch script, both as
    fresh processes timed from launch to exit (start-up, data, training, writing results).

    ``rounds`` interleaved rounds (start-up, the script, linrep with 1 and 2 workers): this
    machine has slow and fast phases of minutes, and a ratio is only meaningful between runs
    close in time; the record holds every round's ratio, their median and range."""
    import statistics
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    cfg = Path(__file__).resolve().parents[1] / "configs" / "train_linear.toml"
    print(
        f"== 3. end to end: linrep train {cfg.name} --seeds 0-9 ({steps} GD steps, m = 4, linear) "
        f"vs a per-run PyTorch script, wall time from launch to exit, {rounds} interleaved "
        "rounds; load {:.1f}/{:.1f}/{:.1f}".format(*os.getloadavg())
    )

    def wall(cmd: list[str]) -> float:
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        return time.perf_counter() - t0

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what fit() uses for this size
    lat4 = LatentModel.from_config({"m": 4})
    kernels = kernel_seconds_per_step(lat4, "linear", 10) * steps
    step_linrep, step_hand = step_vs_handwritten(lat4, 10)
    torch.set_num_threads(threads)
    per = max(1, min(10, naive_runs))
    t: dict[str, list[float]] = {"startup": [], "naive": [], "w1": [], "w2": []}
    for r in range(rounds):
        startup = min(wall([sys.executable, "-c", "import torch, linrep.cli"]) for _ in range(2))
        naive = wall([sys.executable, "-c", NAIVE_SCRIPT, str(steps), str(per)])
        t["startup"].append(startup)
        t["naive"].append(startup + (naive - startup) * 10 / per)
        for workers in (1, 2):
            with tempfile.TemporaryDirectory() as tmp:
                cmd = linrep_command(
                    "train", cfg, "--out", f"{tmp}/o", "--seeds", "0-9", "--quiet",
                    "--set", f"train.steps={steps}", "--set", f"train.workers={workers}",
                )  # fmt: skip
                t[f"w{workers}"].append(wall(cmd))
        print(
            f"  round {r + 1}: start-up (python + torch + linrep.cli) {startup:5.2f} s, per-run "
            f"script 10 runs {t['naive'][-1]:6.2f} s"
            + ("" if per == 10 else f" ({per} timed, training x{10 / per:g})")
            + f", linrep workers 1 {t['w1'][-1]:5.2f} s ({t['naive'][-1] / t['w1'][-1]:4.1f}x), "
            f"workers 2 {t['w2'][-1]:5.2f} s ({t['naive'][-1] / t['w2'][-1]:4.1f}x)"
        )
    med = {k: statistics.median(v) for k, v in t.items()}
    ceilings = {
        "ceiling_startup": med["naive"] / med["startup"],
        "kernels_s": kernels,
        "ceiling_startup_kernels": med["naive"] / (med["startup"] + kernels),
        "step_us": step_linrep * 1e6,
        "handwritten_step_us": step_hand * 1e6,
        "ceiling_startup_steps": med["naive"]
        / (med["startup"] + min(step_linrep, step_hand) * steps),
    }
    print(
        "  ceilings of the ratio (median script time over a lower bound on linrep's): start-up "
        f"alone {ceilings['ceiling_startup']:5.1f}x; start-up + linrep's own matmul and softmax "
        f"kernels for the whole run ({kernels:4.2f} s, torch profiler) "
        f"{ceilings['ceiling_startup_kernels']:5.1f}x\n  linrep's step (10 runs) "
        f"{step_linrep * 1e6:.0f} us vs the same step written by hand as six torch kernels and the update "
        f"{step_hand * 1e6:.0f} us (fastest of 10 alternating windows each); start-up + the "
        f"whole run's steps at the faster of the two: {ceilings['ceiling_startup_steps']:5.1f}x"
    )
    for workers in (1, 2):
        ratios = [a / b for a, b in zip(t["naive"], t[f"w{workers}"], strict=True)]
        rec[f"end_to_end_workers{workers}"] = {
            "linrep_s": med[f"w{workers}"],
            "naive_s": med["naive"],
            "startup_s": med["startup"],
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "ratio_range": [min(ratios), max(ratios)],
            "rounds": {k: t[k] for k in ("startup", "naive", f"w{workers}")},
            **ceilings,
        }
        print(
            f"  linrep train --seeds 0-9, train.workers = {workers}: median {med[f'w{workers}']:5.2f}"
            f" s -> RATIO {statistics.median(ratios):5.1f}x (rounds {min(ratios):.1f}-"
            f"{max(ratios):.1f}x; target >= 20x; ceilings above)"
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
    ap.add_argument("--skip-large", action="store_true", help="skip part 4 (compute-bound group)")
    args = ap.parse_args()
    rec = Recorder("bench_train")
    if not args.skip_flops:
        bench_flops(rec)
    if not args.skip_ensemble:
        bench_ensemble(args.steps, args.naive_runs, args.threads, rec, args.workers)
    if not args.skip_end_to_end:
        bench_end_to_end(args.steps, args.naive_runs, rec)
    if not args.skip_large:
        bench_large(rec, args.naive_runs, args.steps)
    rec.write()


if __name__ == "__main__":
    main()
