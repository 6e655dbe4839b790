"""Uncertainty of headline numbers: seed-based t intervals, bootstrap and cluster-bootstrap intervals
(95 % default)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import InputError

__all__ = [
    "Interval",
    "seed_interval",
    "support_of",
    "bootstrap_interval",
    "cluster_bootstrap_interval",
]


@dataclass(frozen=True)
class Interval:
    """A point estimate with a confidence interval.

    Attributes:
        mean: the estimate (mean of the finite values, or the bootstrap statistic).
        low, high: interval bounds (NaN when it cannot be computed, e.g. n = 1).
        n: number of finite values used.
        level: confidence level.
        method: ``"t"`` (seeds), ``"bootstrap"`` or ``"cluster bootstrap"``.
    """

    mean: float
    low: float
    high: float
    n: int
    level: float
    method: str

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict[str, float | int | str]:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.mean:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _finite(x: np.ndarray | list[float]) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64).ravel()
    return x[np.isfinite(x)]


def support_of(name: str) -> tuple[float, float] | None:
    """The range a statistic named ``name`` cannot leave, or None if unbounded.

    Cosines lie in [−1, 1], absolute cosines and accuracies in [0, 1] (matched on the metric's
    name: ``*abs_cosine*`` / ``*accuracy*`` before ``*cosine*``).
    """
    low = name.lower()
    if "abs_cos" in low or "accuracy" in low:
        return (0.0, 1.0)
    if "cosine" in low:
        return (-1.0, 1.0)
    return None


def seed_interval(
    x: np.ndarray | list[float],
    level: float = 0.95,
    support: tuple[float, float] | None = None,
) -> Interval:
    """Student-t interval over independent runs (seeds): mean ± t_{(1+level)/2, n−1} · s / √n.

    With ``support = (a, b)`` (the range the statistic cannot leave, e.g. (−1, 1) for a cosine;
    :func:`support_of` gives it from a metric's name) the interval is intersected with [a, b]: the
    parameter lies in [a, b], so the intersection covers it whenever the t-interval does — the
    coverage is at least the t-interval's — and a cosine's interval never reads 1.06.

    Args:
        x: (n,) one value per seed; NaN/inf values are dropped.
        level: confidence level in (0, 1).
        support: (a, b) bounds of the statistic, or None.

    Returns:
        :class:`Interval` (low = high = NaN for n < 2; method ``"t"`` or ``"t∩support"``).
    """
    from scipy import stats

    if not 0 < level < 1:
        raise InputError(f"confidence level must lie in (0, 1), got {level}")
    v = _finite(x)
    n = v.size
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level, "t")
    m = float(v.mean())
    if n < 2:
        return Interval(m, float("nan"), float("nan"), 1, level, "t")
    h = float(stats.t.ppf((1 + level) / 2, n - 1) * v.std(ddof=1) / np.sqrt(n))
    if support is None:
        return Interval(m, m - h, m + h, n, level, "t")
    a, b = support
    return Interval(m, max(m - h, a), min(m + h, b), n, level, "t∩support")


def bootstrap_interval(
    x: np.ndarray | list[float],
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
    statistic: Callable[..., np.ndarray] = np.mean,
) -> Interval:
    """Percentile bootstrap interval of a statistic of i.i.d. values (e.g. pairs of one concept).

    Args:
        x: (n,) values; NaN/inf values are dropped.
        level: confidence level.
        n_boot: number of resamples.
        seed: random seed.
        statistic: a reducer accepting ``axis=`` (np.mean, np.median, ...).

    Returns:
        :class:`Interval` whose ``mean`` is the statistic on the full sample.
    """
    if not 0 < level < 1:
        raise InputError(f"confidence level must lie in (0, 1), got {level}")
    v = _finite(x)
    n = v.size
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level, "bootstrap")
    est = float(statistic(v))
    rng = np.random.default_rng(seed)
    stats_ = np.empty(n_boot)
    step = max(1, 2**22 // n)  # bound memory of the (n_boot, n) index matrix
    for s in range(0, n_boot, step):
        k = min(step, n_boot - s)
        stats_[s : s + k] = statistic(v[rng.integers(0, n, size=(k, n))], axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(stats_, [a, 1 - a])
    return Interval(est, float(lo), float(hi), n, level, "bootstrap")


def cluster_bootstrap_interval(
    x: np.ndarray | list[float],
    clusters: np.ndarray | list[int],
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> Interval:
    """Percentile cluster-bootstrap interval of a mean over dependent values.

    The C clusters (e.g. word clusters of pairs that share a word) are resampled with replacement
    (C draws); a resample c_1..c_C has mean Σ_i S_{c_i} / Σ_i n_{c_i}, S_c and n_c the sum and size
    of cluster c. With every cluster a singleton this is the ordinary
    bootstrap of the mean.

    Args:
        x: (n,) values; NaN/inf values are dropped with their cluster labels.
        clusters: (n,) cluster label of each value.
        level: confidence level.
        n_boot: resamples.
        seed: random seed.

    Returns:
        :class:`Interval` (method ``"cluster bootstrap"``) whose ``mean`` is the plain mean and ``n``
        the number of clusters; low = high = NaN with fewer than 2 clusters.
    """
    if not 0 < level < 1:
        raise InputError(f"confidence level must lie in (0, 1), got {level}")
    v = np.asarray(x, dtype=np.float64).ravel()
    lab = np.asarray(clusters).ravel()
    if lab.shape != v.shape:
        raise InputError(f"{v.size} values but {lab.size} cluster labels; give one label per value")
    ok = np.isfinite(v)
    v, lab = v[ok], lab[ok]
    method = "cluster bootstrap"
    if v.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, level, method)
    _, inv = np.unique(lab, return_inverse=True)
    sums, sizes = np.bincount(inv, weights=v), np.bincount(inv).astype(np.float64)
    C = sizes.size
    if C < 2:
        return Interval(float(v.mean()), float("nan"), float("nan"), C, level, method)
    pick = np.random.default_rng(seed).integers(0, C, size=(n_boot, C))  # C clusters per resample
    stats_ = sums[pick].sum(axis=1) / sizes[pick].sum(axis=1)
    a = (1 - level) / 2
    lo, hi = np.quantile(stats_, [a, 1 - a])
    return Interval(float(v.mean()), float(lo), float(hi), C, level, method)
