"""Benchmark: exact next-token table of the latent model at m = 10 (59,049 contexts × 1,024 tokens).

Compares linrep's blocked bit-mask construction with a straightforward per-context loop (the way one
would write it first) on the same machine in the same run, and reports the ratio. Run:

    python benchmarks/bench_latent.py
"""

from __future__ import annotations

import time

import numpy as np

from linrep.latent import LatentConfig, LatentModel
from record import Recorder


def naive_table(model: LatentModel) -> np.ndarray:
    """One context at a time: mask consistent tokens, renormalise p(c)."""
    out = np.empty((model.n_contexts, model.n_tokens))
    for k, ctx in enumerate(model.contexts):
        ok = np.all((ctx == -1) | (model.tokens == ctx), axis=1)
        row = np.where(ok, model.p_concepts, 0.0)
        out[k] = row / row.sum()
    return out


def main() -> None:
    rec = Recorder("bench_latent")
    cfg = LatentConfig(m=10, kind="ising", param_seed=0)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        model = LatentModel(cfg)
        times.append(time.perf_counter() - t0)
    best = min(times)
    print(f"m = 10: {model.n_contexts:,} contexts × {model.n_tokens:,} tokens")
    print(
        f"linrep LatentModel (p(c), contexts, exact table): best of 3 = {best:.2f} s  (all: {', '.join(f'{t:.2f}' for t in times)})"
    )
    t0 = time.perf_counter()
    model.regimes()
    print(f"regime report (pair log-odds of all concepts): {time.perf_counter() - t0:.2f} s")
    t0 = time.perf_counter()
    ref = naive_table(model)
    naive = time.perf_counter() - t0
    assert np.allclose(ref, model.p_next)
    print(
        f"straightforward per-context loop: {naive:.2f} s  → linrep is {naive / best:.1f}× faster"
    )
    rec.update(
        m=10,
        n_contexts=int(model.n_contexts),
        n_tokens=int(model.n_tokens),
        linrep_s=best,
        naive_s=naive,
        ratio=naive / best,
    )
    rec.write()


if __name__ == "__main__":
    main()
