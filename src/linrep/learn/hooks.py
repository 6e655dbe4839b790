"""Metric hooks: functions of the current embeddings evaluated at every history step.

A hook is ``fn(f: (K, n, d), g: (K, V, d)) -> {name: (K,) array}`` (float64 numpy arrays; f for the
contexts of ``latent.contexts``). When the model has a token bias it is called ``fn(f, g, b=b)``
with b: (K, V), so learned log-odds are f·Δg + Δb; a hook that cannot take ``b`` is refused before
training.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping

import numpy as np

from ..errors import InputError

__all__ = ["MetricFn", "normalise_hooks", "check_bias_hooks", "evaluate_hooks"]

MetricFn = Callable[..., dict[str, np.ndarray]]
"""fn(f: (K, n, d), g: (K, V, d)) -> {name: (K,) array}; called as fn(f, g, b=b) with the bias
b: (K, V) when the model has one (``model.unembedding_bias``), so learned log-odds are f·Δg + Δb."""


def normalise_hooks(metrics) -> list[tuple[str, MetricFn]]:
    """(column prefix, hook) pairs: a dict ``{prefix: fn}`` names columns ``prefix.name``."""
    if metrics is None:
        return []
    if isinstance(metrics, Mapping):
        items = [(f"{k}.", v) for k, v in metrics.items()]
    elif callable(metrics):
        items = [("", metrics)]
    else:
        items = [("", fn) for fn in metrics]
    for name, fn in items:
        if not callable(fn):
            raise InputError(f"metric hook '{name or fn!r}' is not callable; pass fn(f, g) -> dict")
    return items


def _takes_bias(fn) -> bool:
    """True if ``fn`` accepts a keyword argument ``b`` (named, or via ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: let the call decide
        return True
    return any(
        p.kind is p.VAR_KEYWORD or (p.name == "b" and p.kind is not p.POSITIONAL_ONLY)
        for p in params
    )


def check_bias_hooks(hooks: list[tuple[str, MetricFn]], has_bias: bool) -> None:
    """With a bias, every hook must take ``b`` (log-odds are f·Δg + Δb); fail before training."""
    for name, fn in hooks if has_bias else ():
        if not _takes_bias(fn):
            raise InputError(
                f"metric hook '{name or fn!r}' cannot take the bias b, but model.unembedding_bias "
                "is true; give the hook a keyword argument b=None (b: (K, V)) and use it"
            )


def evaluate_hooks(
    hooks: list[tuple[str, MetricFn]], f: np.ndarray, g: np.ndarray, b: np.ndarray | None
) -> dict[str, np.ndarray]:
    """Every hook's values at one step, ``{column: (K,) float64}``, checked for shape."""
    K = f.shape[0]
    kw = {} if b is None else {"b": b}
    out: dict[str, np.ndarray] = {}
    for prefix, fn in hooks:
        vals = fn(f, g, **kw)
        if not isinstance(vals, Mapping):
            raise InputError(f"metric hook {fn!r} returned {type(vals).__name__}; return a dict")
        for name, v in vals.items():
            a = np.asarray(v, dtype=np.float64).reshape(-1)
            if a.size != K:
                raise InputError(
                    f"metric '{prefix}{name}' has {a.size} values; a hook must return "
                    f"one per run (K = {K})"
                )
            out[f"{prefix}{name}"] = a
    return out
