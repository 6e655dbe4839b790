"""Property-based tests of the latent conditional model (``docs/latent-model.md`` §1).

Hypothesis draws random *valid* models — independent, Ising, Bayesian networks on random DAGs,
explicit tables (with and without zeros), m ≤ 5, random ``min_known``/``max_known``, synonyms,
enumerated or sampled contexts — and every quantity is checked against a brute-force computation
written here from the definitions:

    p(c) from each family's formula, evaluated one concept vector at a time;
    p(y | ξ) = p(c(y)) w(y) · 1[c(y) agrees with ξ on its known concepts] / Z(ξ).

Nothing below reuses the package's own enumeration or masking code.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linrep.errors import ConfigError
from linrep.latent import LatentModel

SETTINGS = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,  # same examples every run: CI never flakes, failures reproduce
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

probs = st.floats(min_value=0.02, max_value=0.98, allow_nan=False)


# ------------------------------------------------------------------ strategies of valid configs
@st.composite
def independent_cfg(draw, m):
    return {"kind": "independent", "p1": [draw(probs) for _ in range(m)]}


@st.composite
def ising_cfg(draw, m):
    real = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False)
    h = [draw(real) for _ in range(m)]
    # valid J: upper-triangular, or symmetric (then only J[i][j], i < j, counts)
    J = [[draw(real) if j > i else 0.0 for j in range(m)] for i in range(m)]
    if draw(st.booleans()):
        J = [[J[min(i, j)][max(i, j)] for j in range(m)] for i in range(m)]
    return {"kind": "ising", "h": h, "J": J}


@st.composite
def bayesnet_cfg(draw, m, allow_deterministic=False):
    order = draw(st.permutations(list(range(m))))
    parents: list[list[int]] = [[] for _ in range(m)]
    for k, node in enumerate(order):
        earlier = order[:k]
        pa = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) if earlier else []
        parents[node] = pa
    value = st.one_of(probs, st.sampled_from([0.0, 1.0])) if allow_deterministic else probs
    cpt = [[draw(value) for _ in range(2 ** len(parents[i]))] for i in range(m)]
    return {"kind": "bayesnet", "parents": parents, "cpt": cpt}


@st.composite
def table_cfg(draw, m, allow_zeros=False):
    lo = 0.0 if allow_zeros else 0.05
    raw = [draw(st.floats(min_value=lo, max_value=1.0, allow_nan=False)) for _ in range(2**m)]
    if allow_zeros:
        raw = [0.0 if draw(st.booleans()) and i > 0 else r for i, r in enumerate(raw)]
        raw[0] = max(raw[0], 0.1)  # at least one possible vector
    total = math.fsum(raw)
    return {"kind": "table", "table": [r / total for r in raw]}


@st.composite
def latent_cfg(draw, positive=True, max_m=5):
    """A random valid ``[latent]`` table; ``positive`` keeps p(c) > 0 for every vector."""
    m = draw(st.integers(1, max_m))
    kind = draw(st.sampled_from(["independent", "ising", "bayesnet", "table"]))
    if kind == "independent":
        cfg = draw(independent_cfg(m))
    elif kind == "ising":
        cfg = draw(ising_cfg(m))
    elif kind == "bayesnet":
        cfg = draw(bayesnet_cfg(m, allow_deterministic=not positive))
    else:
        cfg = draw(table_cfg(m, allow_zeros=not positive))
    lo = draw(st.integers(0, m))
    hi = draw(st.integers(lo, m))
    cfg.update(m=m, min_known=lo, max_known=hi)
    cfg["weights"] = draw(st.sampled_from(["uniform", "known_count"]))
    if draw(st.booleans()):
        cfg["synonyms"] = draw(
            st.lists(st.floats(min_value=0.1, max_value=3.0), min_size=1, max_size=3)
        )
    return cfg


# ------------------------------------------------------------------ brute force from definitions
def brute_p_concepts(cfg) -> dict[tuple[int, ...], float]:
    """p(c) for every c ∈ {0,1}^m, keyed by the tuple (c_0, ..., c_{m-1})."""
    m = cfg["m"]
    out = {}
    for c in itertools.product((0, 1), repeat=m):
        if cfg["kind"] == "independent":
            p = 1.0
            for ci, q in zip(c, cfg["p1"], strict=True):
                p *= q if ci else 1.0 - q
        elif cfg["kind"] == "ising":
            s = [2 * ci - 1 for ci in c]
            e = sum(cfg["h"][i] * s[i] for i in range(m))
            e += sum(cfg["J"][i][j] * s[i] * s[j] for i in range(m) for j in range(i + 1, m))
            p = math.exp(e)
        elif cfg["kind"] == "bayesnet":
            p = 1.0
            for i in range(m):
                row = sum(c[pa] << k for k, pa in enumerate(cfg["parents"][i]))
                q = cfg["cpt"][i][row]
                p *= q if c[i] else 1.0 - q
        else:
            p = cfg["table"][sum(ci << i for i, ci in enumerate(c))]
        out[c] = p
    z = math.fsum(out.values())
    return {c: p / z for c, p in out.items()}


def token_list(cfg) -> list[tuple[tuple[int, ...], float]]:
    """Tokens in id order as (concept vector, w(y)); id = vector index · k + synonym index."""
    m = cfg["m"]
    syn = cfg.get("synonyms") or [1.0]
    w = [s / math.fsum(syn) for s in syn]
    out = []
    for t in range(2**m):
        c = tuple((t >> i) & 1 for i in range(m))
        out.extend((c, ws) for ws in w)
    return out


def agrees(ctx, c) -> bool:
    return all(x == -1 or x == ci for x, ci in zip(ctx, c, strict=True))


def brute_row(ctx, tokens, pc) -> np.ndarray:
    """p(y | ξ) for one context ξ by direct enumeration (unnormalised if Z = 0)."""
    row = np.array([pc[c] * w if agrees(ctx, c) else 0.0 for c, w in tokens])
    z = row.sum()
    return row / z if z > 0 else row


# ------------------------------------------------------------------ properties
@SETTINGS
@given(latent_cfg(positive=True))
def test_p_next_matches_brute_force_and_zero_exactly_on_contradictions(cfg):
    model = LatentModel.from_config(dict(cfg))
    pc = brute_p_concepts(cfg)
    tokens = token_list(cfg)
    assert model.p_next.shape == (model.n_contexts, len(tokens))
    np.testing.assert_allclose(model.p_next.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    for j, ctx in enumerate(model.contexts.tolist()):
        contradicts = np.array([not agrees(ctx, c) for c, _ in tokens])
        # zero EXACTLY on the contradicting tokens (p(c) > 0 for every c here)
        np.testing.assert_array_equal(model.p_next[j] == 0.0, contradicts)
        np.testing.assert_allclose(model.p_next[j], brute_row(ctx, tokens, pc), rtol=1e-9)


@SETTINGS
@given(latent_cfg(positive=True))
def test_context_set_weights_and_tokens(cfg):
    model = LatentModel.from_config(dict(cfg))
    m, lo, hi = cfg["m"], cfg["min_known"], cfg["max_known"]
    # every partial assignment with lo ≤ #known ≤ hi, in base-3 order (digit 0 = ⋄, 1 → 0, 2 → 1)
    expected = []
    for k in range(3**m):
        digits = [(k // 3**i) % 3 - 1 for i in range(m)]
        if lo <= sum(d != -1 for d in digits) <= hi:
            expected.append(digits)
    assert model.contexts.dtype == np.int8
    assert model.contexts.tolist() == expected
    assert model.n_impossible_contexts == 0
    # weights
    w = model.weights
    assert np.all(w > 0)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    n_known = [sum(d != -1 for d in ctx) for ctx in expected]
    if cfg["weights"] == "uniform":
        np.testing.assert_allclose(w, 1.0 / len(expected))
    else:
        levels = sorted(set(n_known))
        want = [1.0 / len(levels) / n_known.count(k) for k in n_known]
        np.testing.assert_allclose(w, want, rtol=1e-12)
    # tokens and p(c)
    tokens = token_list(cfg)
    assert model.tokens.tolist() == [list(c) for c, _ in tokens]
    pc = brute_p_concepts(cfg)
    want_pc = [pc[tuple((t >> i) & 1 for i in range(m))] for t in range(2**m)]
    np.testing.assert_allclose(model.p_concepts, want_pc, rtol=1e-9, atol=1e-300)
    assert model.p_concepts.sum() == pytest.approx(1.0, abs=1e-12)


@SETTINGS
@given(latent_cfg(positive=False, max_m=4))
def test_models_with_impossible_vectors(cfg):
    """With zeros in p(c): p(y|ξ) = 0 iff y contradicts ξ or p(c(y)) = 0; impossible ξ are dropped."""
    model = LatentModel.from_config(dict(cfg))
    pc = brute_p_concepts(cfg)
    tokens = token_list(cfg)
    m, lo, hi = cfg["m"], cfg["min_known"], cfg["max_known"]
    possible = []
    for ctx in itertools.product((-1, 0, 1), repeat=m):
        if lo <= sum(x != -1 for x in ctx) <= hi:
            if sum(pc[c] for c in pc if agrees(ctx, c)) > 0:
                possible.append(list(ctx))
    assert sorted(model.contexts.tolist()) == sorted(possible)
    np.testing.assert_allclose(model.p_next.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert model.weights.sum() == pytest.approx(1.0, abs=1e-12)
    for j, ctx in enumerate(model.contexts.tolist()):
        zero = np.array([(not agrees(ctx, c)) or pc[c] == 0.0 for c, _ in tokens])
        np.testing.assert_array_equal(model.p_next[j] == 0.0, zero)
        np.testing.assert_allclose(model.p_next[j], brute_row(ctx, tokens, pc), rtol=1e-9)


@SETTINGS
@given(latent_cfg(positive=True, max_m=4))
def test_log_odds_and_counterfactual_pairs(cfg):
    model = LatentModel.from_config(dict(cfg))
    pc = brute_p_concepts(cfg)
    m = cfg["m"]
    lo = model.log_odds()
    assert lo.shape == (model.n_contexts, m)
    for j, ctx in enumerate(model.contexts.tolist()):
        z = sum(p for c, p in pc.items() if agrees(ctx, c))
        for i in range(m):
            if ctx[i] != -1:
                assert lo[j, i] == (np.inf if ctx[i] == 1 else -np.inf)
                continue
            p1 = sum(p for c, p in pc.items() if agrees(ctx, c) and c[i] == 1) / z
            assert lo[j, i] == pytest.approx(math.log(p1) - math.log1p(-p1), rel=1e-7, abs=1e-9)
    n_syn = len(cfg.get("synonyms") or [1.0])
    for i in range(m):
        pairs = model.counterfactual_pairs(i)
        assert pairs.shape == (2 ** (m - 1) * n_syn**2, 2)
        y0, y1 = model.tokens[pairs[:, 0]], model.tokens[pairs[:, 1]]
        assert np.all(y0[:, i] == 0) and np.all(y1[:, i] == 1)
        others = np.arange(m) != i
        assert np.array_equal(y0[:, others], y1[:, others])
        assert len({tuple(p) for p in pairs.tolist()}) == len(pairs)  # no duplicates


@SETTINGS
@given(latent_cfg(positive=True, max_m=4), st.integers(0, 2**16))
def test_independent_concepts_have_context_free_log_odds(cfg, seed):
    """Independent concepts: for unknown C_i the log-odds are the prior log-odds in every context."""
    cfg = dict(cfg, kind="independent")
    for key in ("h", "J", "parents", "cpt", "table"):
        cfg.pop(key, None)
    rng = np.random.default_rng(seed)
    cfg["p1"] = rng.uniform(0.05, 0.95, size=cfg["m"]).tolist()
    model = LatentModel.from_config(cfg)
    lo = model.log_odds()
    prior = np.log(cfg["p1"]) - np.log1p(-np.asarray(cfg["p1"]))
    unknown = model.contexts == -1
    np.testing.assert_allclose(lo[unknown], np.broadcast_to(prior, lo.shape)[unknown], rtol=1e-9)
    if cfg.get("synonyms") is None:  # synonym pairs add log(w_b / w_a): not one constant
        assert all(r.in_regime for r in model.regimes())


@SETTINGS
@given(latent_cfg(positive=True), st.integers(1, 300), st.integers(0, 2**16))
def test_sampled_contexts(cfg, n, seed):
    cfg = dict(cfg, contexts="sampled", n_contexts=n, context_seed=seed)
    model = LatentModel.from_config(cfg)
    n_known = (model.contexts != -1).sum(axis=1)
    assert np.all((n_known >= cfg["min_known"]) & (n_known <= cfg["max_known"]))
    assert len({tuple(c) for c in model.contexts.tolist()}) == model.n_contexts  # merged duplicates
    assert model.n_contexts <= n
    assert model.weights.sum() == pytest.approx(1.0, abs=1e-12)
    # weights are draw frequencies: multiples of 1/n
    np.testing.assert_allclose(model.weights * n, np.round(model.weights * n), atol=1e-9)
    np.testing.assert_allclose(model.p_next.sum(axis=1), 1.0, atol=1e-12)


@SETTINGS
@given(latent_cfg(positive=True, max_m=4), st.integers(1, 500), st.integers(0, 2**16))
def test_samples_never_contradict_their_context(cfg, n, seed):
    model = LatentModel.from_config(dict(cfg))
    ctx, tok = model.sample(n, seed=seed)
    assert ctx.shape == tok.shape == (n,)
    assert ctx.min() >= 0 and ctx.max() < model.n_contexts
    assert tok.min() >= 0 and tok.max() < model.n_tokens
    c = model.contexts[ctx]
    y = model.tokens[tok]
    assert np.all((c == -1) | (c == y))
    assert np.all(model.p_next[ctx, tok] > 0)
    again = model.sample(n, seed=seed)
    assert np.array_equal(again[0], ctx) and np.array_equal(again[1], tok)  # deterministic


@settings(max_examples=25, deadline=None, derandomize=True)
@given(st.integers(1, 5), st.data())
def test_invalid_known_range_is_a_config_error(m, data):
    lo = data.draw(st.integers(0, m + 2))
    hi = data.draw(st.integers(-1, m + 2))
    cfg = {"m": m, "min_known": lo, "max_known": hi}
    if 0 <= lo <= hi <= m:
        LatentModel.from_config(cfg)
    else:
        with pytest.raises(ConfigError, match="min_known"):
            LatentModel.from_config(cfg)


@SETTINGS
@given(st.integers(2, 5), st.data())
def test_ising_regime_iff_uncoupled(m, data):
    """Ising, all contexts: the pair log-odds of concept i are log p(c1)/p(c0) = 2h_i + 2 Σ_j J_ij s_j
    (the pair's other spins), so concept i is in the log-odds-matching regime iff it has no
    coupling, and then α_i = 2 h_i."""
    h = [data.draw(st.floats(-2, 2)) for _ in range(m)]
    coupling = st.one_of(st.just(0.0), st.floats(0.05, 2.0), st.floats(-2.0, -0.05))
    J = [[data.draw(coupling) if j > i else 0.0 for j in range(m)] for i in range(m)]
    model = LatentModel.from_config({"m": m, "kind": "ising", "h": h, "J": J})
    for i, r in enumerate(model.regimes()):
        coupled = any(J[min(i, j)][max(i, j)] != 0.0 for j in range(m) if j != i)
        assert r.in_regime == (not coupled), (i, J)
        if not coupled:
            assert r.alpha == pytest.approx(2 * h[i], abs=1e-9)
