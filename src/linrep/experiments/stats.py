"""Statistics the experiments report: per-seed summaries, bands over steps, per-run geometry.

Nothing here computes geometry itself: per-run metrics come from
:func:`linrep.geometry.simulation_metrics`, intervals from :func:`linrep.geometry.seed_interval`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "Summary",
    "summarise",
    "band",
    "bounds",
    "history_arrays",
    "run_metrics",
    "biases",
    "stack_metrics",
]


@dataclass(frozen=True)
class Summary:
    """One statistic over seeds: mean and 95 % Student-t interval (``linrep.geometry.seed_interval``).

    Attributes:
        mean: mean of the finite per-seed values.
        ci: (low, high) bounds (NaN for fewer than 2 finite values).
        n: number of finite values.
        per_seed: the values, in seed order.
    """

    mean: float
    ci: tuple[float, float]
    n: int
    per_seed: tuple[float, ...]

    @property
    def low(self) -> float:
        return self.ci[0]

    @property
    def high(self) -> float:
        return self.ci[1]

    def cell(self, digits: int = 3) -> str:
        """Table cell ``mean ± half-width`` (or ``mean [lo, hi]``): :func:`linrep.report.format_ci`."""
        from ..report import format_ci

        return format_ci(self.mean, self.low, self.high, digits)

    def to_json(self) -> dict[str, Any]:
        """``{"mean", "ci": [lo, hi], "n", "per_seed"}`` (the layout of every results file)."""
        return {
            "mean": self.mean,
            "ci": list(self.ci),
            "n": self.n,
            "per_seed": list(self.per_seed),
        }


def summarise(values: Sequence[float] | np.ndarray) -> Summary:
    """Mean, 95 % seed (Student t) interval and the per-seed values of one statistic."""
    from ..geometry import seed_interval

    v = np.asarray(values, dtype=np.float64).ravel()
    iv = seed_interval(v)
    return Summary(iv.mean, (iv.low, iv.high), iv.n, tuple(float(x) for x in v))


def bounds(summaries: Sequence[Summary]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, lows, highs), each (len(summaries),): the input of ``figures.point_intervals``."""
    return (
        np.array([x.mean for x in summaries]),
        np.array([x.low for x in summaries]),
        np.array([x.high for x in summaries]),
    )


def history_arrays(history: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """One history column as a (K, T) array, with the (T,) logged steps.

    Args:
        history: ``TrainResult.history`` rows (``run``, ``step``, ...).
        key: column name.

    Returns:
        (steps (T,), values (K, T)); NaN where a run lacks the value.
    """
    steps = np.array(sorted({int(r["step"]) for r in history}))
    runs = sorted({int(r["run"]) for r in history})
    col = {s: i for i, s in enumerate(steps)}
    row = {r: i for i, r in enumerate(runs)}
    out = np.full((len(runs), steps.size), np.nan)
    for r in history:
        v = r.get(key)
        if v is not None:
            out[row[int(r["run"])], col[int(r["step"])]] = float(v)
    return steps, out


def band(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and 95 % seed interval over axis 0 of (K, T) values: ``(mean, lo, hi)`` each (T,).

    With a single seed the band collapses to the mean.
    """
    from ..geometry import seed_interval

    values = np.asarray(values, dtype=np.float64)
    ivs = [seed_interval(values[:, t]) for t in range(values.shape[1])]
    mean = np.array([iv.mean for iv in ivs])
    lo = np.array([iv.low for iv in ivs])
    hi = np.array([iv.high for iv in ivs])
    lo = np.where(np.isfinite(lo), lo, mean)
    hi = np.where(np.isfinite(hi), hi, mean)
    return mean, lo, hi


def run_metrics(
    latent,
    f: np.ndarray,
    g: np.ndarray,
    inner: str = "euclidean",
    *,
    probes: bool = False,
    bias: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """:func:`linrep.geometry.simulation_metrics` for each of K runs.

    Args:
        latent: the latent model the runs were trained on.
        f: (K, n, d) embeddings of ``latent.contexts``.
        g: (K, V, d) unembeddings.
        inner: inner-product name (``euclidean`` | ``causal`` | ``random``).
        probes: also compute linear-probe accuracies (cross-validated; slower).
        bias: optional (K, V) per-token biases b(y) (log-odds f·Δg + Δb).

    Returns:
        K dicts of metrics.
    """
    from ..geometry import simulation_metrics
    from ..geometry.simulation import SimulationIndex

    index = SimulationIndex.from_latent(latent)
    return [
        simulation_metrics(
            index,
            f[k],
            g[k],
            inner=inner,
            probes=probes,
            bias=None if bias is None else bias[k],
        )
        for k in range(f.shape[0])
    ]


def biases(res, initial: bool = False) -> np.ndarray | None:
    """The per-token biases b(y) of a trained ensemble, (K, V), or None if the model has none."""
    b = res.params(initial=initial).get("b")
    return None if b is None else b.reshape(b.shape[0], -1)


def stack_metrics(per_run: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, Summary]:
    """Summarise scalar metrics over runs: ``{key: summarise([run[key] for run in per_run])}``."""
    return {k: summarise([float(r[k]) for r in per_run]) for k in keys if k in per_run[0]}
