"""The learner (paper §2): next-token models p̂(y | ξ) = softmax_y(f(ξ)ᵀ g(y) + b(y)) trained on the
latent conditional model, as batched ensembles of K runs.

Modules (one job each):

- :mod:`~linrep.learn.config`: ``[model]`` / ``[train]`` sections (``ModelConfig``, ``TrainConfig``).
- :mod:`~linrep.learn.encoders` / :mod:`~linrep.learn.transformer`: f (free, linear, mlp, transformer).
- :mod:`~linrep.learn.losses`: cross-entropy, squared, sigmoid heads with closed-form gradients.
- :mod:`~linrep.learn.objective`: exact / sampled target tables and minibatches.
- :mod:`~linrep.learn.optim`: batched gd / sgd / adam / adamw, constant or cosine schedule.
- :mod:`~linrep.learn.model`: encoder + unembedding on one flat parameter matrix θ: (K, P).
- :mod:`~linrep.learn.trainer`: ``fit`` → ``TrainResult`` (history, metric hooks, checkpoints).

Names are imported lazily, so ``from linrep.learn import ModelConfig`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ModelConfig": "linrep.learn.config",
    "TrainConfig": "linrep.learn.config",
    "fit": "linrep.learn.trainer",
    "TrainResult": "linrep.learn.trainer",
    "MetricFn": "linrep.learn.trainer",
    "resolve_runs": "linrep.learn.trainer",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'linrep.learn' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
