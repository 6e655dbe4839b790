"""Plumbing shared by the experiments: configs (with ``--quick`` overrides), training, statistics.

An experiment config is a TOML file with the usual ``[latent]``, ``[model]`` and ``[train]`` sections,
an ``[experiment]`` section with the experiment's own keys (read into the experiment module's
dataclass), and optional ``[quick.<section>]`` tables that are merged over the sections in
``--quick`` mode (fewer seeds/steps, same code paths).

Nothing here computes geometry: per-run metrics come from :func:`linrep.geometry.simulation_metrics`,
intervals from :func:`linrep.geometry.seed_interval`, training from :func:`linrep.learn.fit`.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..config import check_sections, load_toml, section_from_dict
from ..errors import ConfigError

__all__ = [
    "CONFIG_SECTIONS",
    "configs_dir",
    "experiment_config_path",
    "load_experiment_config",
    "merge_quick",
    "deep_merge",
    "seeds_of",
    "summarise",
    "band",
    "history_arrays",
    "run_metrics",
    "stack_metrics",
    "ci_cell",
    "known_keys",
    "read_section",
    "train",
    "latent_of",
    "with_section",
    "train_variants",
    "GEOMETRY_KEYS",
    "geometry_cells",
]

CONFIG_SECTIONS = ("experiment", "latent", "model", "train", "quick")

HEADLINE_KEYS = (
    "same_concept_cosine",
    "cross_concept_abs_cosine",
    "cross_pair_abs_cosine",
    "alignment_cosine",
    "log_odds_matching_error",
)
"""Per-run scalar metrics every experiment reports (means over concepts, Euclidean inner product)."""

METRIC_LABELS = {
    "same_concept_cosine": "same-concept cos",
    "cross_pair_abs_cosine": "cross-concept |cos| (pairs)",
    "cross_concept_abs_cosine": "cross-concept |cos| (directions)",
    "alignment_cosine": "alignment cos(f̄ᵢ, ḡᵢ)",
    "log_odds_matching_error": "log-odds error (nats)",
    "excess_loss": "excess loss (nats)",
    "probe_accuracy": "probe accuracy",
}


def configs_dir() -> Path:
    """The folder holding the experiment configs (``configs/`` of the source tree).

    ``LINREP_CONFIGS`` overrides it (e.g. for an installed, non-editable copy of linrep).
    """
    env = os.environ.get("LINREP_CONFIGS")
    if env:
        return Path(env)
    here = Path(__file__).resolve()
    for cand in (here.parents[3] / "configs", here.parents[1] / "configs"):
        if cand.is_dir():
            return cand
    raise ConfigError(
        "cannot find the configs/ folder of linrep; set LINREP_CONFIGS=/path/to/linrep/configs"
    )


def experiment_config_path(stem: str) -> Path:
    """Path of ``configs/<stem>.toml`` (e.g. ``e1_emergence``)."""
    path = configs_dir() / f"{stem}.toml"
    if not path.is_file():
        raise ConfigError(f"experiment config '{path}' is missing; restore it from the repository")
    return path


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``over`` (tables merge, other values replace), new dict."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(dict(out[k]), v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def merge_quick(raw: Mapping[str, Any], quick: bool) -> dict[str, Any]:
    """Drop the ``[quick]`` tables, merging them over the other sections first if ``quick``."""
    raw = dict(raw)
    q = raw.pop("quick", {}) or {}
    if not isinstance(q, Mapping):
        raise ConfigError("[quick] must be a table of sections, e.g. [quick.train] steps = 2000")
    check_sections(q, [s for s in CONFIG_SECTIONS if s != "quick"], where="[quick]")
    return deep_merge(raw, q) if quick else raw


def known_keys(experiment_cls: type | None = None) -> dict[str, list[str]]:
    """Valid keys per section (for ``--set`` checking): latent, model, train and the experiment's."""
    from ..latent import LatentConfig
    from ..learn.config import config_keys

    known = {"latent": [f.name for f in dataclasses.fields(LatentConfig)], **config_keys()}
    if experiment_cls is not None:
        known["experiment"] = [f.name for f in dataclasses.fields(experiment_cls)]
    return known


def load_experiment_config(
    path: str | os.PathLike,
    quick: bool = False,
    overrides: Sequence[str] = (),
    experiment_cls: type | None = None,
) -> dict[str, Any]:
    """Read an experiment config, apply ``[quick.*]`` (if ``quick``) and ``--set`` overrides.

    Args:
        path: the TOML file.
        quick: merge the ``[quick.<section>]`` tables over the sections.
        overrides: ``section.key=value`` strings (checked against the sections' valid keys).
        experiment_cls: dataclass of the ``[experiment]`` section (to check its ``--set`` keys).

    Returns:
        The resolved raw config (sections ``experiment``, ``latent``, ``model``, ``train``).
    """
    from ..config import apply_overrides

    raw = load_toml(path)
    check_sections(raw, CONFIG_SECTIONS, where=str(path))
    raw = merge_quick(raw, quick)
    if overrides:
        apply_overrides(raw, overrides, known_keys(experiment_cls))
    return raw


def seeds_of(n_seeds: int, first_seed: int = 0) -> list[int]:
    """The seeds ``first_seed … first_seed + n_seeds − 1`` (clear error if ``n_seeds`` < 1)."""
    if n_seeds < 1:
        raise ConfigError(f"experiment.n_seeds must be ≥ 1, got {n_seeds}")
    return list(range(first_seed, first_seed + n_seeds))


def read_section(cls: type, raw: Mapping[str, Any], section: str) -> Any:
    """``section_from_dict`` for one section of a resolved config."""
    return section_from_dict(cls, raw.get(section, {}), section)


def summarise(values: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Mean, 95 % seed (Student t) interval and the per-seed values of one statistic.

    Returns:
        ``{"mean", "ci": [low, high], "n", "per_seed": [...]}`` (NaN bounds for n < 2).
    """
    from ..geometry import seed_interval

    v = np.asarray(values, dtype=np.float64).ravel()
    iv = seed_interval(v)
    return {"mean": iv.mean, "ci": [iv.low, iv.high], "n": iv.n, "per_seed": v.tolist()}


def ci_cell(s: Mapping[str, Any], digits: int = 3) -> str:
    """Table cell ``mean ± half-width`` of a :func:`summarise` dict."""
    from ..report import format_ci

    return format_ci(s["mean"], s["ci"][0], s["ci"][1], digits)


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
    out = np.full((len(runs), steps.size), np.nan)
    for r in history:
        v = r.get(key)
        if v is not None:
            out[runs.index(int(r["run"])), col[int(r["step"])]] = float(v)
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
    latent, f: np.ndarray, g: np.ndarray, inner: str = "euclidean", *, probes: bool = False
) -> list[dict[str, Any]]:
    """:func:`linrep.geometry.simulation_metrics` for each of K runs.

    Args:
        latent: the latent model the runs were trained on.
        f: (K, n, d) embeddings of ``latent.contexts``.
        g: (K, V, d) unembeddings.
        inner: inner-product name (``euclidean`` | ``causal`` | ``random``).
        probes: also compute linear-probe accuracies (cross-validated; slower).

    Returns:
        K dicts of metrics.
    """
    from ..geometry import simulation_metrics
    from ..geometry.simulation import SimulationIndex

    index = SimulationIndex.from_latent(latent)
    return [
        simulation_metrics(index, f[k], g[k], inner=inner, probes=probes) for k in range(f.shape[0])
    ]


def stack_metrics(per_run: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> dict[str, dict]:
    """Summarise scalar metrics over runs: ``{key: summarise([run[key] for run in per_run])}``."""
    return {k: summarise([float(r[k]) for r in per_run]) for k in keys if k in per_run[0]}


def asdict(obj: Any) -> dict[str, Any]:
    """``dataclasses.asdict`` for config dataclasses (for the report's resolved config)."""
    return dataclasses.asdict(obj)


def train(latent, raw: Mapping[str, Any], seeds: Sequence[int], *, progress: bool = True, **kw):
    """:func:`linrep.learn.fit` of the config's ``[model]``/``[train]`` on ``latent`` for ``seeds``."""
    from ..learn import fit

    return fit(latent, raw.get("model", {}), raw.get("train", {}), seeds, progress=progress, **kw)


#: The geometry statistics that the experiments' comparison tables report (Euclidean).
GEOMETRY_KEYS = (
    "same_concept_cosine",
    "cross_concept_abs_cosine",
    "cross_pair_abs_cosine",
    "alignment_cosine",
    "log_odds_matching_error",
)


def geometry_cells(st: Mapping[str, Any]) -> dict[str, str]:
    """Table cells "mean ± CI" of the :data:`GEOMETRY_KEYS` summaries in ``st``."""
    return {
        "same-concept cos": ci_cell(st["same_concept_cosine"]),
        "cross |cos| (directions)": ci_cell(st["cross_concept_abs_cosine"]),
        "cross |cos| (pairs)": ci_cell(st["cross_pair_abs_cosine"]),
        "alignment": ci_cell(st["alignment_cosine"]),
        "log-odds error": ci_cell(st["log_odds_matching_error"]),
    }


def train_variants(
    latent,
    raw: Mapping[str, Any],
    variants: Sequence[Mapping[str, Any]],
    seeds: Sequence[int],
    *,
    label_key: str,
    progress: bool = True,
    **kw,
):
    """Train one ensemble per variant of the config's ``[train]`` section.

    Args:
        latent: the latent model.
        raw: the experiment config.
        variants: each a ``label`` plus ``[train]`` keys replacing the config's.
        seeds: the seeds of every ensemble.
        label_key: the ``[train]`` key that names a variant without a ``label`` (e.g. "optimizer").
        progress: progress bars.
        **kw: passed to :func:`linrep.learn.fit` (e.g. ``metrics``).

    Yields:
        ``(label, TrainResult)`` per variant, in order.
    """
    for entry in variants:
        entry = dict(entry)
        label = str(entry.pop("label", entry.get(label_key, "?")))
        yield (
            label,
            train(latent, with_section(raw, "train", **entry), seeds, progress=progress, **kw),
        )


def latent_of(raw: Mapping[str, Any], **changes: Any):
    """The :class:`~linrep.latent.LatentModel` of the config's ``[latent]`` with keys replaced."""
    from ..latent import LatentModel

    return LatentModel.from_config({**dict(raw.get("latent", {})), **changes})


def with_section(raw: Mapping[str, Any], section: str, **changes: Any) -> dict[str, Any]:
    """A copy of ``raw`` with keys of one section replaced."""
    out = copy.deepcopy(dict(raw))
    out[section] = {**dict(out.get(section, {})), **changes}
    return out
