"""Packing a sweep's runs into batched ensembles.

Runs whose configs agree on everything that fixes shapes and the computation graph — i.e. differ
only in keys the learner lets vary inside one ensemble (seed, lr, init_scale, …; see
``linrep.learn.config.PER_RUN_KEYS``) — are trained together as ONE batched ensemble of K runs.
Each group is one Ray task. Groups never depend on the number of workers, so the same sweep file
gives the same groups (and the same numbers) on a laptop and on a cluster.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass

from .spec import Run, canonical_json

__all__ = ["Group", "per_run_keys", "make_groups"]


@dataclass(frozen=True)
class Group:
    """Runs trained as one batched ensemble (one Ray task)."""

    group_id: str
    """Hash of the member run ids (stable: the same runs give the same id)."""
    runs: tuple[Run, ...]

    def payload(self) -> dict:
        """Plain data shipped to the worker: the shared config and each run's id, seed and config."""
        return {
            "group_id": self.group_id,
            "runs": [{"run_id": r.run_id, "seed": r.seed, "config": r.config} for r in self.runs],
        }

    def split(self) -> list[Group]:
        """One group per run (used to isolate a failing run after its ensemble failed)."""
        return [make_group([r]) for r in self.runs]


def per_run_keys() -> dict[str, tuple[str, ...]]:
    """Config keys that may differ between the runs of one ensemble, per section."""
    from ..learn.config import PER_RUN_KEYS

    return {"latent": (), **{k: tuple(v) for k, v in PER_RUN_KEYS.items()}}


def make_group(runs: list[Run]) -> Group:
    ids = "".join(sorted(r.run_id for r in runs))
    return Group(hashlib.sha256(ids.encode()).hexdigest()[:12], tuple(runs))


def shape_key(run: Run, batchable: dict[str, tuple[str, ...]]) -> str:
    """The part of a run's config that must be shared within an ensemble, as a string."""
    cfg = copy.deepcopy(run.config)
    for section, keys in batchable.items():
        for key in keys:
            cfg.get(section, {}).pop(key, None)
    return canonical_json(cfg)


def make_groups(runs: list[Run], max_group_size: int) -> list[Group]:
    """Group runs by shared shape, in order of first appearance; chunk to ``max_group_size``."""
    batchable = per_run_keys()
    buckets: dict[str, list[Run]] = {}
    for run in runs:
        buckets.setdefault(shape_key(run, batchable), []).append(run)
    groups = []
    for members in buckets.values():
        for i in range(0, len(members), max_group_size):
            groups.append(make_group(members[i : i + max_group_size]))
    return groups
