"""The implicit-bias theorem where it applies: GD on g with f frozen (docs/theory.md §3.2).

The max-margin programme is checked by the KKT conditions of its statement (written here from
scratch, over every pair of in-support tokens) and against a generic constrained optimiser (scipy's
SLSQP on the original variables), the constraint sets against explicit loops, and
the convergence claims (direction ≈ c / log t, norm ≈ ‖G‖ log t, the theorem beats the baselines) at
reduced scale with fixed seeds.
"""

from __future__ import annotations

import numpy as np
import pytest

from linrep.latent import LatentModel
from linrep.theory.implicit_bias import (
    pair_constraint_rows,
    softmax_max_margin,
)


def _constraints(p_next: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(A, C): rows of (g_z − g_z')·f = 0 (z < z' ∈ S) and (g_z − g_v)·f ≥ 1 (z ∈ S, v ∉ S)."""
    n, V = p_next.shape
    d = f.shape[1]
    eq, ineq = [], []
    for k in range(n):
        S = np.flatnonzero(p_next[k] > 0)
        for z in S:
            for zz in S:
                if z < zz:
                    eq.append((k, z, zz))
            for v in np.flatnonzero(p_next[k] == 0):
                ineq.append((k, z, v))

    def lin(k, a, b):
        row = np.zeros((V, d))
        row[a] += f[k]
        row[b] -= f[k]
        return row.ravel()

    A = np.array([lin(*c) for c in eq]) if eq else np.zeros((0, V * d))
    return A, np.array([lin(*c) for c in ineq])


def _slsqp_max_margin(p_next: np.ndarray, f: np.ndarray) -> np.ndarray:
    """min ½‖G‖² under :func:`_constraints`, by a generic solver."""
    from scipy.optimize import minimize

    A, C = _constraints(p_next, f)
    cons = [{"type": "ineq", "fun": lambda x: C @ x - 1, "jac": lambda x: C}]
    if len(A):
        cons.append({"type": "eq", "fun": lambda x: A @ x, "jac": lambda x: A})
    x0 = np.linalg.lstsq(C, np.full(len(C), 2.0), rcond=None)[0]
    res = minimize(
        lambda x: 0.5 * x @ x,
        x0,
        jac=lambda x: x,
        constraints=cons,
        method="SLSQP",
        options={"maxiter": 500, "ftol": 1e-12},
    )
    assert res.success, res.message
    return res.x.reshape(p_next.shape[1], f.shape[1])


@pytest.mark.parametrize("seed", [0, 1])
def test_max_margin_matches_a_generic_qp_solver(seed):
    lat = LatentModel.from_config({"m": 2, "p1": [0.3, 0.8]})
    rng = np.random.default_rng(seed)
    c = (
        lat.contexts
    )  # features: a random linear map of the one-hot {0, 1, ⋄} encoding (rank 2m + 1)
    x = np.concatenate([(c == 0), (c == 1), (c == -1)], axis=1).astype(float)
    f = x @ rng.standard_normal((6, 7))
    mm = softmax_max_margin(lat.p_next, f)
    assert mm.separable and mm.rank == 5
    # KKT of min ½‖x‖² s.t. Cx ≥ 1, Ax = 0 (sufficient for this convex QP): feasible, and
    # x = C_actᵀλ + Aᵀν with λ ≥ 0 on the active constraints
    A, C = _constraints(lat.p_next, f)
    x = mm.G.ravel()
    assert np.abs(A @ x).max() < 1e-9 and (C @ x).min() > 1 - 1e-9
    from scipy.optimize import nnls

    act = C[np.abs(C @ x - 1) < 1e-7]
    M = np.vstack([act, A, -A]).T  # λ ≥ 0 on the active rows, ν = ν⁺ − ν⁻ free
    _, resid = nnls(M, x, maxiter=100 * M.shape[1])
    assert resid < 1e-7 * np.linalg.norm(x)
    # a generic solver finds no feasible point of smaller norm
    ref = _slsqp_max_margin(lat.p_next, f)
    assert (C @ ref.ravel()).min() > 1 - 1e-6
    assert np.linalg.norm(mm.G) <= np.linalg.norm(ref) + 1e-9
    assert mm.margin == pytest.approx(1 / np.linalg.norm(mm.G))


def test_infeasible_support_constraints_are_reported():
    """Two contexts with the same features but opposite supports cannot both be satisfied."""
    p = np.array([[1.0, 0.0], [0.0, 1.0]])
    f = np.array([[1.0, 0.0], [1.0, 0.0]])
    assert not softmax_max_margin(p, f).separable


def test_pair_constraint_sets_drop_contexts_where_both_tokens_are_impossible():
    lat = LatentModel.from_config({"m": 3, "kind": "ising", "param_seed": 0})
    ctx, P = lat.contexts, lat.p_next
    for i in range(3):
        for y0, y1 in lat.counterfactual_pairs(i):
            rows, y = pair_constraint_rows(lat, i, (y0, y1))
            want = [
                k
                for k in range(lat.n_contexts)
                if ctx[k, i] != -1 and (P[k, y1] if ctx[k, i] == 1 else P[k, y0]) > 0
            ]
            assert rows.tolist() == want
            assert np.array_equal(y, ctx[want, i])
            dropped = [k for k in range(lat.n_contexts) if ctx[k, i] != -1 and k not in want]
            assert all(P[k, y0] == 0 and P[k, y1] == 0 for k in dropped)
            assert dropped  # with m = 3 another known concept can contradict both tokens


def test_gd_with_frozen_features_turns_towards_the_max_margin_direction_like_1_over_log_t():
    """The theorem's three predictions, at reduced scale (m = 4, d = 32, 20k GD steps, 2 seeds)."""
    from linrep.experiments.stats import history_arrays
    from linrep.learn import fit
    from linrep.theory.implicit_bias import implicit_bias_hook

    lat = LatentModel.from_config({"m": 4, "p1": [0.3, 0.6, 0.7, 0.2]})
    hook = implicit_bias_hook(lat, fixed_features=True)
    r = fit(
        lat,
        {"encoder": "linear", "d": 32, "init_scale": 0.3},
        {"lr": 1.0, "steps": 20000, "log_every": 100, "trainable": "unembedding"},
        seeds=[0, 1],
        metrics={"ib": hook},
        progress=False,
    )
    steps, angle = history_arrays(r.history, "ib.angle_max_margin")
    _, norm = history_arrays(r.history, "ib.norm")
    at = {t: int(np.searchsorted(steps, t)) for t in (200, 2000, 20000)}
    a = {t: angle[:, i] for t, i in at.items()}
    assert np.all(a[200] > a[2000]) and np.all(a[2000] > a[20000])  # it keeps turning
    ratio = (a[20000] * np.log(20000)) / (a[2000] * np.log(2000))
    assert np.all(np.abs(ratio - 1) < 0.15), ratio  # angle · log t ≈ constant: a 1/log t law
    G = [softmax_max_margin(lat.p_next, r.embeddings()[k]).G for k in range(2)]
    slope = (norm[:, at[20000]] - norm[:, at[2000]]) / np.log(10)  # per e-fold of t
    np.testing.assert_allclose(slope, [np.linalg.norm(x) for x in G], rtol=0.15)
    final = {k: history_arrays(r.history, f"ib.{k}")[1][:, -1] for k in ("pair_cos_max_margin",)}
    for base in ("pair_cos_pair_svm", "pair_cos_mean_diff"):
        assert np.all(
            final["pair_cos_max_margin"] > history_arrays(r.history, f"ib.{base}")[1][:, -1]
        )
