"""Joint distributions p(c) over binary concept vectors c ∈ {0,1}^m.

Every family returns the full table ``log p(c)`` over the 2^m concept vectors in *token order*:
vector index t ↔ c with c_i = (t >> i) & 1 (concept 0 is the least significant bit). All tables are
computed in one vectorised pass over that (2^m, m) bit matrix.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .config import LatentConfig

__all__ = [
    "concept_vectors",
    "independent_log_p",
    "ising_log_p",
    "bayesnet_log_p",
    "table_log_p",
    "ising_parameters",
    "log_p_concepts",
]


def concept_vectors(m: int) -> np.ndarray:
    """All 2^m concept vectors in token order: (2^m, m) int8 with row t = bits of t."""
    t = np.arange(2**m, dtype=np.int64)
    return ((t[:, None] >> np.arange(m)) & 1).astype(np.int8)


def _normalise_log(logw: np.ndarray) -> np.ndarray:
    finite = np.isfinite(logw)
    if not finite.any():
        raise ConfigError("the concept distribution gives probability 0 to every concept vector")
    top = logw[finite].max()
    return logw - (top + np.log(np.exp(logw[finite] - top).sum()))


def independent_log_p(p1: np.ndarray) -> np.ndarray:
    """log p(c) = Σ_i [c_i log p_i + (1 − c_i) log(1 − p_i)] for independent Bernoulli concepts."""
    p1 = np.asarray(p1, dtype=np.float64)
    c = concept_vectors(p1.size).astype(np.float64)
    with np.errstate(divide="ignore"):
        lp1, lp0 = np.log(p1), np.log1p(-p1)
    # 0 · log 0 is 0: use where() so an impossible value does not give NaN.
    terms = np.where(c == 1, lp1, lp0)
    return terms.sum(axis=1)


def ising_log_p(h: np.ndarray, J: np.ndarray) -> np.ndarray:
    """log p(c) = Σ_i h_i s_i + Σ_{i<j} J_ij s_i s_j − log Z with spins s = 2c − 1."""
    h = np.asarray(h, dtype=np.float64)
    Ju = np.triu(np.asarray(J, dtype=np.float64), k=1)
    s = 2.0 * concept_vectors(h.size) - 1.0
    energy = s @ h + ((s @ Ju) * s).sum(axis=1)
    return _normalise_log(energy)


def bayesnet_log_p(parents: list[list[int]], cpt: list[np.ndarray]) -> np.ndarray:
    """log p(c) = Σ_i log P(C_i = c_i | C_pa(i)) for a DAG with conditional probability tables."""
    m = len(parents)
    c = concept_vectors(m).astype(np.int64)
    logp = np.zeros(2**m)
    with np.errstate(divide="ignore"):
        for i in range(m):  # loop over concepts (m ≤ 20), vectorised over all 2^m vectors
            pa = np.asarray(parents[i], dtype=np.int64)
            row = (c[:, pa] << np.arange(pa.size)).sum(axis=1) if pa.size else np.zeros(2**m, int)
            q = np.asarray(cpt[i], dtype=np.float64)[row]
            logp += np.where(c[:, i] == 1, np.log(q), np.log1p(-q))
    return logp


def table_log_p(table: np.ndarray) -> np.ndarray:
    """log of an explicit probability table given in token order."""
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(table, dtype=np.float64))


def _check_prob(values: np.ndarray, key: str) -> None:
    if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values > 1):
        raise ConfigError(
            f"latent.{key} has values outside [0, 1]; probabilities must lie in [0, 1]"
        )


def ising_parameters(cfg: LatentConfig) -> tuple[np.ndarray, np.ndarray]:
    """The fields h (m,) and upper-triangular couplings J (m, m) of an Ising config.

    Missing ``h``/``J`` are drawn from N(0, sd²) with ``param_seed`` (h first, then J), on the
    complete, random, chain or explicit ``edges`` graph.
    """
    m = cfg.m
    rng = np.random.default_rng(cfg.param_seed)
    if cfg.h is None:
        h = rng.normal(0.0, cfg.field_sd, size=m)
    else:
        h = np.asarray(cfg.h, dtype=np.float64)
        if h.shape != (m,):
            raise ConfigError(f"latent.h has {h.size} entries; it needs m = {m}")
    if cfg.J is None:
        mask = np.zeros((m, m), dtype=bool)
        if cfg.edges is not None:
            for edge in cfg.edges:
                if len(edge) != 2 or not all(0 <= v < m for v in edge) or edge[0] == edge[1]:
                    raise ConfigError(
                        f"latent.edges entry {edge} must be two distinct concepts in 0..{m - 1}"
                    )
                i, j = sorted(edge)
                mask[i, j] = True
        elif cfg.graph == "complete":
            mask = np.triu(np.ones((m, m), dtype=bool), k=1)
        elif cfg.graph == "chain":
            mask[np.arange(m - 1), np.arange(1, m)] = True
        elif cfg.graph == "random":
            mask = np.triu(rng.random((m, m)) < cfg.edge_prob, k=1)
        J = np.where(mask, rng.normal(0.0, cfg.coupling_sd, size=(m, m)), 0.0)
    else:
        J = np.asarray(cfg.J, dtype=np.float64)
        if J.shape != (m, m):
            raise ConfigError(f"latent.J has shape {J.shape}; it needs ({m}, {m})")
        lower = np.tril(J, k=-1)
        if np.any(lower != 0) and not np.allclose(J, J.T):
            raise ConfigError(
                "latent.J must be upper-triangular (only J[i][j], i < j, is used) or symmetric"
            )
        J = np.triu(J, k=1)
    if not (np.all(np.isfinite(h)) and np.all(np.isfinite(J))):
        raise ConfigError("latent.h and latent.J must be finite numbers")
    return h, J


def _check_dag(parents: list[list[int]], m: int) -> None:
    for i, pa in enumerate(parents):
        for p in pa:
            if not 0 <= p < m or p == i:
                raise ConfigError(
                    f"latent.parents[{i}] has parent {p}; parents must be other concepts 0..{m - 1}"
                )
        if len(set(pa)) != len(pa):
            raise ConfigError(f"latent.parents[{i}] lists a parent twice")
    state = [0] * m  # 0 = unseen, 1 = on stack, 2 = done

    def visit(i: int, path: list[int]) -> None:
        if state[i] == 1:
            cycle = path[path.index(i) :] + [i]
            raise ConfigError(
                f"latent.parents has a cycle {' → '.join(map(str, cycle))}; a Bayesian network must be a DAG"
            )
        if state[i] == 2:
            return
        state[i] = 1
        for p in parents[i]:
            visit(p, path + [i])
        state[i] = 2

    for i in range(m):
        visit(i, [])


def log_p_concepts(cfg: LatentConfig) -> np.ndarray:
    """The table log p(c), shape (2^m,), in token order, for any supported ``kind``."""
    m = cfg.m
    if cfg.kind == "independent":
        p1 = np.full(m, 0.5) if cfg.p1 is None else np.asarray(cfg.p1, dtype=np.float64)
        if p1.shape != (m,):
            raise ConfigError(f"latent.p1 has {p1.size} entries; it needs m = {m}")
        _check_prob(p1, "p1")
        return independent_log_p(p1)
    if cfg.kind == "ising":
        return ising_log_p(*ising_parameters(cfg))
    if cfg.kind == "bayesnet":
        if cfg.parents is None or cfg.cpt is None:
            raise ConfigError('kind = "bayesnet" needs latent.parents and latent.cpt')
        if len(cfg.parents) != m or len(cfg.cpt) != m:
            raise ConfigError(f"latent.parents and latent.cpt need m = {m} entries each")
        _check_dag(cfg.parents, m)
        cpt = []
        for i, (pa, q) in enumerate(zip(cfg.parents, cfg.cpt, strict=True)):
            q = np.asarray(q, dtype=np.float64)
            if q.shape != (2 ** len(pa),):
                raise ConfigError(
                    f"latent.cpt[{i}] has {q.size} entries; concept {i} has {len(pa)} parents so it needs "
                    f"2^{len(pa)} = {2 ** len(pa)}"
                )
            _check_prob(q, f"cpt[{i}]")
            cpt.append(q)
        return bayesnet_log_p(cfg.parents, cpt)
    # table
    if cfg.table is None:
        raise ConfigError('kind = "table" needs latent.table (2^m probabilities in token order)')
    table = np.asarray(cfg.table, dtype=np.float64)
    if table.shape != (2**m,):
        raise ConfigError(f"latent.table has {table.size} entries; it needs 2^m = {2**m}")
    _check_prob(table, "table")
    if abs(table.sum() - 1.0) > 1e-6:
        raise ConfigError(f"latent.table sums to {table.sum():.6g}; probabilities must sum to 1")
    return table_log_p(table)
