"""Benchmark: unembedding analysis of all built-in concepts on Gemma 3 270M, cold vs warm cache,
and against a straightforward reimplementation of Park et al.'s recipe on the same unembedding.

* cold: empty cache folder → assemble the GGUF from the wheel's chunks (sha256-checked), parse it,
  dequantize γ (262,144 × 640), fit Cov(γ) over normal tokens, then the analysis;
* warm: the same command again (γ and the covariance come from the cache);
* "core" = concept directions, LOO cosines + bootstrap intervals, 100,000-random-pair null,
  cross-concept matrices under 3 inner products (no shuffled null, no analogies), which is what
  the Park-style reference computes too: float64 copies of γ, whitening of the whole vocabulary,
  and a Python loop over pairs for the leave-one-out means. Both use the same normal-token rows, and
  their LOO cosines are checked to agree.

Peak memory is the process's maximum RSS. Run (≈ 2-3 minutes on 2 cores):

    python benchmarks/bench_llm.py [--model gemma-3-270m]
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from linrep.llm.run import LLMConfig, analyze_model
from record import Recorder


def park_recipe(
    gamma: np.ndarray, rows: np.ndarray, pairs: list[np.ndarray], n_random: int, seed: int
):
    """Park et al.'s recipe written plainly: whiten all of γ, loop over pairs for LOO."""
    g = gamma.astype(np.float64)
    sel = g[rows]
    mean = sel.mean(axis=0)
    cov = np.cov(sel, rowvar=False)
    lam, U = np.linalg.eigh(cov)
    inv_sqrt = U @ np.diag(lam**-0.5) @ U.T
    spaces = {"euclidean": g, "causal": (g - mean) @ inv_sqrt}
    rng = np.random.default_rng(seed)
    normal_ids = np.flatnonzero(rows)
    ia = normal_ids[rng.integers(0, normal_ids.size, n_random)]
    ib = normal_ids[rng.integers(0, normal_ids.size, n_random)]
    out = {}
    for name, s in spaces.items():
        loo_all, dirs = [], []
        rand = s[ib] - s[ia]
        for p in pairs:
            diffs = s[p[:, 1]] - s[p[:, 0]]
            loo = []
            for k in range(len(diffs)):
                others = np.delete(diffs, k, axis=0).mean(axis=0)
                loo.append(diffs[k] @ others / np.linalg.norm(diffs[k]) / np.linalg.norm(others))
            loo_all.append(float(np.mean(loo)))
            d = diffs.mean(axis=0)
            d /= np.linalg.norm(d)
            dirs.append(d)
            _ = rand @ d  # the random-pair projections
        D = np.stack(dirs)
        out[name] = {"loo": loo_all, "cos": D @ D.T}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="gemma-3-270m")
    args = ap.parse_args()
    rec = Recorder("bench_llm")
    with tempfile.TemporaryDirectory(prefix="linrep-bench-") as cache:
        base = LLMConfig(model=args.model, contexts="none", cache=cache)
        # the reference computes what the core computes (LOO, random-pair null, cosine matrices)
        core = dataclasses.replace(base, n_shuffles=0, analogy_queries=0, statistics=False)

        t0 = time.perf_counter()
        res = analyze_model(core, progress=False)
        cold = time.perf_counter() - t0
        print(
            f"{args.model}: {len(res.concepts)} concepts, {sum(c.n_pairs for c in res.concepts)} pairs"
        )
        print(f"cold (empty cache), core analysis:       {cold:6.1f} s   {dict(res.timings)}")
        warm = []
        for _ in range(2):
            t0 = time.perf_counter()
            res = analyze_model(core, progress=False)
            warm.append(time.perf_counter() - t0)
        print(
            f"warm (cached γ + covariance), core:      {min(warm):6.1f} s   (runs: {', '.join(f'{w:.1f}' for w in warm)})"
        )
        t0 = time.perf_counter()
        full = analyze_model(base, progress=False)
        full_s = time.perf_counter() - t0
        print(
            f"warm, full defaults (+{base.n_shuffles} shuffles, {base.analogy_queries} analogy queries/concept, "
            f"the statistics' nulls and tests): "
            f"{full_s:6.1f} s"
        )

        del full
        peak_linrep = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        print(f"peak memory of the linrep runs (max RSS so far): {peak_linrep:.2f} GB")

        # the Park-style reference on the same γ (already in memory: its load is not counted)
        from linrep.llm.cache import ModelCache
        from linrep.llm.concepts import load_concepts, select_pairs
        from linrep.llm.registry import resolve_model
        from linrep.llm.unembedding import load_unembedding

        mc = ModelCache.open(cache)
        unemb = load_unembedding(resolve_model(args.model, mc), mc, progress=False)
        names = list(res.concept_names)
        by_name = {
            c.name: c for c in (select_pairs(c, unemb.vocab) for c in load_concepts("builtin"))
        }
        pairs = [by_name[n].pairs for n in names]
        with threadpool_limits(limits=1):
            t0 = time.perf_counter()
            ref = park_recipe(unemb.gamma, unemb.normal, pairs, core.n_random_pairs, core.seed)
            naive = time.perf_counter() - t0
        max_err = 0.0
        for ip in ("euclidean", "causal"):
            mine = [c.loo_cosine[ip] for c in res.concepts]
            err = float(np.max(np.abs(np.subtract(mine, ref[ip]["loo"]))))
            cerr = float(np.max(np.abs(res.cross[ip].cosine_matrix - ref[ip]["cos"])))
            print(
                f"  agreement with the reference ({ip}): max |Δ LOO| = {err:.1e}, max |Δ cos| = {cerr:.1e}"
            )
            assert err < 1e-6 and cerr < 1e-6
            max_err = max(max_err, err, cerr)
        print(f"Park-style reference (in-memory γ, no load): {naive:6.1f} s")
        print(
            f"  → linrep warm core is {naive / min(warm):.1f}× faster end to end (incl. loading γ)"
        )
        print(
            f"  → cold linrep (assemble + parse + dequantize the GGUF, fit Cov(γ), analyse): "
            f"{cold:.1f} s vs {naive:.1f} s for the reference on an already loaded γ"
        )
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"peak memory including the reference's float64 copies: {peak_gb:.2f} GB")
    rec.update(
        model=args.model,
        cold_s=cold,
        warm_s=min(warm),
        warm_full_defaults_s=full_s,
        reference_s=naive,
        ratio_warm=naive / min(warm),
        peak_linrep_gb=peak_linrep,
        max_abs_diff_loo=max_err,
    )
    rec.write()


if __name__ == "__main__":
    main()
