"""Small shared pieces of the typed results: the JSON base class, null comparisons, one name list.

Every result that leaves a module of :mod:`linrep.llm` is a frozen dataclass deriving from
:class:`Record` (``to_json()`` gives plain JSON values: numpy arrays become lists, NaN becomes null).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Record", "NullComparison", "INNER_NAMES", "TESTED_INNER", "format_interval"]

#: The inner products of a real-model analysis, in the order they are reported (Euclidean first:
#: the papers' orthogonality claim is about it; causal = Cov(γ)⁻¹; random = the control).
INNER_NAMES: tuple[str, ...] = ("euclidean", "causal", "random")
#: Inner products whose LOO statistics and nulls are computed (random is only a heatmap control).
TESTED_INNER: tuple[str, ...] = ("euclidean", "causal")


class Record:
    """Base of the typed results: ``to_json()`` → a dict of plain JSON values."""

    def to_json(self) -> dict[str, Any]:
        from ..io import to_jsonable

        return to_jsonable(self)


@dataclass(frozen=True)
class NullComparison(Record):
    """An observed statistic against a null distribution built the same way.

    Attributes:
        observed: the statistic.
        null_mean, null_std: mean and standard deviation of the null draws.
        z: (observed − null_mean) / null_std.
        p_value: one-sided, (1 + #{null ≥ observed}) / (1 + n_null).
        n_null: number of null draws.
    """

    observed: float
    null_mean: float
    null_std: float
    z: float
    p_value: float
    n_null: int

    @classmethod
    def from_test(cls, t: Any, j: int | None = None) -> NullComparison:
        """From a :class:`linrep.geometry.NullTest` (entry ``j`` of a vectorised one)."""

        def pick(a: Any) -> float:
            return float(np.asarray(a).ravel()[j]) if j is not None else float(a)

        return cls(
            pick(t.observed),
            pick(t.null_mean),
            pick(t.null_std),
            pick(t.z),
            pick(t.p_value),
            t.n_null,
        )


def format_interval(
    mean: float | None, low: float | None, high: float | None, digits: int = 3
) -> str:
    """``"0.412 [0.36, 0.46]"`` (estimate with its interval), ``"–"`` when missing."""
    if mean is None or not math.isfinite(mean):
        return "–"
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low:.{digits - 1}f}, {high:.{digits - 1}f}]"
