"""The body of one sweep task: train a group of runs as one batched ensemble and measure it.

:func:`train_group` runs inside a Ray worker (or in-process with ``--serial``). It receives plain
data (the runs' resolved configs and seeds) and returns plain data (one result row per run), so it
needs no shared file system and works the same on a laptop and on a cluster.

Errors: a :class:`~linrep.errors.LinrepError` (bad value, NaN loss, ...) is deterministic, so it is
*returned* as ``{"ok": False, "error": ...}`` instead of raised — Ray would only retry it in vain.
Anything else (a crashed worker, an out-of-memory kill, a flaky file system) is raised and left
to Ray's ``max_retries`` / ``retry_exceptions``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ..errors import LinrepError

__all__ = ["train_group", "geometry_metrics"]


def geometry_metrics(
    latent,
    f: np.ndarray,
    g: np.ndarray,
    inner: str = "euclidean",
    probes: bool = False,
    b: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """Concept-geometry metrics of K models at once, via :func:`linrep.geometry.metric_hook`.

    Args:
        latent: the :class:`~linrep.latent.LatentModel` the models were trained on.
        f: (K, n_contexts, d) embeddings f(ξ) of ``latent.contexts``.
        g: (K, V, d) unembeddings.
        inner: inner product of the cosines (euclidean | causal | random).
        probes: also compute linear-probe accuracy (slow).
        b: optional (K, V) per-token biases (learned log-odds f·Δg + Δb).

    Returns:
        One dict per run: metric name → float (means over concepts), including the
        ``<metric>_identifiable`` twins and ``identifiable_rank`` (F).
    """
    from ..geometry import metric_hook

    values = metric_hook(latent, inner=inner, probes=probes)(f, g, b=b)
    return [{k: float(np.asarray(v)[i]) for k, v in values.items()} for i in range(f.shape[0])]


def _fit(latent, runs: list[dict[str, Any]], out_dir: str | None):
    """Train the group's runs as ONE batched ensemble with :func:`linrep.learn.fit`."""
    from ..config import section_from_dict
    from ..learn import ModelConfig, TrainConfig, fit

    model_cfgs = [section_from_dict(ModelConfig, r["config"]["model"], "model") for r in runs]
    train_cfgs = [section_from_dict(TrainConfig, r["config"]["train"], "train") for r in runs]
    seeds = [int(r["seed"]) for r in runs]
    # resume=True continues from out_dir/checkpoint.pt if an earlier attempt left one
    return fit(
        latent,
        model_cfgs,
        train_cfgs,
        seeds=seeds,
        out_dir=out_dir,
        resume=out_dir is not None,
        progress=False,
    )


def train_group(payload: dict[str, Any]) -> dict[str, Any]:
    """Train one group and return ``{"ok": True, "rows": [...]}`` or ``{"ok": False, "error": msg}``.

    Args:
        payload: ``{"group_id": str, "runs": [{"run_id", "seed", "config"}, ...], "geometry": bool,
            "out_dir": str | None, "threads": int | None}``; all runs share the latent model and
            every shape-determining setting (see :mod:`linrep.sweep.groups`).

    Returns:
        On success one row per run: ``run_id``, ``status = "ok"``, the last history entry of
        the run (``loss``, ``excess_loss``, ``param_norm``, …), geometry metrics of the trained
        model and (prefixed ``untrained_``) of its initialisation, ``wall_time_s`` (the group's wall
        time divided by its size), ``group_wall_time_s``, ``group_size``, ``group_id``.
    """
    runs = payload["runs"]
    threads = payload.get("threads")
    try:
        import torch

        if threads:
            torch.set_num_threads(int(threads))
        from ..latent import LatentModel

        t0 = time.perf_counter()
        latent = LatentModel.from_config(dict(runs[0]["config"]["latent"]))
        result = _fit(latent, runs, payload.get("out_dir"))
        f, g = result.embeddings(), result.unembeddings()
        f0, g0 = result.initial_embeddings(), result.initial_unembeddings()
        b, b0 = (result.params(initial=i).get("b") for i in (False, True))
        rows = []
        for k, run in enumerate(runs):
            if k in result.failed:  # stopped by a non-finite loss; the ensemble's others went on
                rows.append(
                    {"run_id": run["run_id"], "status": "failed", "error": result.failed[k]}
                )
                continue
            final = {
                key: val
                for key, val in result.final[k].items()
                if key not in ("run", "seed", "step", "lr")
                and isinstance(val, (int, float, np.number))
            }
            row: dict[str, Any] = {"run_id": run["run_id"], "status": "ok", **final}
            rows.append(row)
        if payload.get("geometry", True):
            opts = {
                "inner": payload.get("inner", "euclidean"),
                "probes": payload.get("probes", False),
            }
            K = len(runs)
            trained = geometry_metrics(
                latent, f, g, b=None if b is None else b.reshape(K, -1), **opts
            )
            untrained = geometry_metrics(
                latent, f0, g0, b=None if b0 is None else b0.reshape(K, -1), **opts
            )
            for row, a, b in zip(rows, trained, untrained, strict=True):
                if row["status"] != "ok":
                    continue
                row.update(a)
                row.update({f"untrained_{k}": v for k, v in b.items()})
        wall = time.perf_counter() - t0
    except LinrepError as e:
        return {"ok": False, "error": str(e)}
    for row in rows:
        row.update(
            wall_time_s=wall / len(runs),
            group_wall_time_s=wall,
            group_size=len(runs),
            group_id=payload["group_id"],
        )
        row.setdefault("error", "")
        for key, val in list(row.items()):
            if isinstance(val, float) and math.isinf(val):
                row[key] = float("nan")
    return {"ok": True, "rows": rows}
