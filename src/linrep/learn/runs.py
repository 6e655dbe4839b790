"""The runs of an ensemble: per-run configs checked to share shapes, and their fingerprint.

An ensemble of K runs trains as one batched computation, so its runs may differ only in the
per-run keys (:data:`~linrep.learn.config.PER_RUN_KEYS`). The fingerprint identifies what a
checkpoint was trained on (resuming with anything else is refused).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import section_from_dict
from ..errors import ConfigError, InputError
from .config import ModelConfig, TrainConfig, shared_fingerprint

__all__ = ["resolve_runs", "fingerprint", "NOT_FINGERPRINTED"]

NOT_FINGERPRINTED = (
    "log_every",
    "checkpoint_every",
    "checkpoint_seconds",
    "threads",
    "workers",
    "device",
)
"""[train] keys that do not change the numbers (how often to log/checkpoint, where to compute)."""


def _as_list(cfg, cls, section) -> list:
    items = cfg if isinstance(cfg, (list, tuple)) else [cfg]
    out = []
    for c in items:
        if isinstance(c, cls):
            out.append(c)
        elif isinstance(c, Mapping):
            out.append(section_from_dict(cls, c, section))
        else:
            raise InputError(
                f"[{section}] must be a {cls.__name__} or a dict, got {type(c).__name__}"
            )
    if not out:
        raise InputError(f"empty list of [{section}] configs")
    return out


def resolve_runs(
    model_cfg, train_cfg, seeds: Sequence[int] | None = None
) -> tuple[list[ModelConfig], list[TrainConfig]]:
    """Per-run (model, train) configs of an ensemble, checked to share shapes.

    ``model_cfg``/``train_cfg`` are a config (or raw dict) or a list of them (one per run). ``seeds``
    (optional) overrides ``train.seed`` run by run; a single train config is repeated once per seed.
    """
    mcfgs = _as_list(model_cfg, ModelConfig, "model")
    tcfgs = _as_list(train_cfg, TrainConfig, "train")
    if seeds is not None:
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise InputError("seeds is empty; pass at least one seed (e.g. --seeds 0-9)")
        if len(tcfgs) == 1:
            tcfgs = tcfgs * len(seeds)
        if len(tcfgs) != len(seeds):
            raise InputError(
                f"{len(tcfgs)} train configs but {len(seeds)} seeds; pass one seed per run"
            )
        tcfgs = [dataclasses.replace(c, seed=s) for c, s in zip(tcfgs, seeds, strict=True)]
    K = max(len(mcfgs), len(tcfgs))
    if len(mcfgs) == 1:
        mcfgs = mcfgs * K
    if len(tcfgs) == 1:
        tcfgs = tcfgs * K
    if len(mcfgs) != K or len(tcfgs) != K:
        raise InputError(
            f"{len(mcfgs)} model configs and {len(tcfgs)} train configs; pass 1 or K of each"
        )
    for section, cfgs in (("model", mcfgs), ("train", tcfgs)):
        ref = shared_fingerprint(cfgs[0], section)
        for k, c in enumerate(cfgs[1:], 1):
            fp = shared_fingerprint(c, section)
            for key in ref:
                if fp[key] != ref[key]:
                    raise ConfigError(
                        f"runs 0 and {k} differ in {section}.{key} ({ref[key]!r} vs {fp[key]!r}); "
                        "an ensemble may only vary per-run keys (seed, lr, init_scale, ...): "
                        "train them as separate ensembles"
                    )
    return mcfgs, tcfgs


def latent_hash(latent) -> str:
    """A short hash of the latent model's contexts, weights and distribution (16 hex digits).

    Small models hash their exact table; larger ones the tables it is computed from (p(c) and the
    within-vector token probabilities), so no large table is ever built for hashing.
    """
    h = hashlib.sha256()
    if getattr(latent, "small", True):
        arrays = (latent.contexts, latent.weights, latent.p_next)
    else:
        arrays = (latent.contexts, latent.weights, latent.p_concepts, latent.token_prob)
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def fingerprint(latent, mcfgs: list[ModelConfig], tcfgs: list[TrainConfig]) -> dict[str, Any]:
    """What a checkpoint was trained on: latent config and tables, per-run model/train configs."""
    tr = []
    for c in tcfgs:
        d = dataclasses.asdict(c)
        for k in NOT_FINGERPRINTED:
            d.pop(k)
        if c.lr_schedule == "constant":
            d.pop("steps")  # a constant-lr run may be extended by resuming with more steps
        if c.trainable == "all":
            d.pop("trainable")  # checkpoints written before the option existed stay resumable
        for key, default in (("eval_contexts", None), ("eval_seed", 0)):
            if d[key] == default:  # likewise for the held-out evaluation's defaults
                d.pop(key)
        tr.append(d)
    lat_cfg = getattr(latent, "config", None)
    return {
        "latent_config": dataclasses.asdict(lat_cfg) if dataclasses.is_dataclass(lat_cfg) else None,
        "tables_sha256": latent_hash(latent),
        "model": [dataclasses.asdict(c) for c in mcfgs],
        "train": tr,
    }
