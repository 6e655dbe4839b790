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
- :mod:`~linrep.learn.checkpoint`: atomic ``torch.save`` checkpoints read with ``weights_only=True``.
- :mod:`~linrep.learn.run`: ``linrep train CONFIG --out DIR [--set k=v] [--seeds 0-9] [--resume]``.

Example (the paper's calibration, 10 seeds as one batched ensemble)::

    from linrep.latent import LatentModel
    from linrep.learn import fit

    latent = LatentModel.from_config({"m": 4})
    res = fit(latent, {"encoder": "linear", "d": 32}, {"steps": 20000}, seeds=range(10))
    f, g = res.embeddings(), res.unembeddings()      # (10, 81, 32), (10, 16, 32)
    res.final[0]["excess_loss"]                       # population loss − H(Y|X), nats

Names are imported lazily, so ``from linrep.learn import ModelConfig`` does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "ModelConfig": "linrep.learn.config",
    "TrainConfig": "linrep.learn.config",
    "fit": "linrep.learn.trainer",
    "TrainResult": "linrep.learn.trainer",
    "MetricFn": "linrep.learn.trainer",
    "resolve_runs": "linrep.learn.trainer",
}

__all__ = sorted(_EXPORTS)


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time names load lazily
    from .config import ModelConfig as ModelConfig
    from .config import TrainConfig as TrainConfig
    from .trainer import MetricFn as MetricFn
    from .trainer import TrainResult as TrainResult
    from .trainer import fit as fit
    from .trainer import resolve_runs as resolve_runs

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
