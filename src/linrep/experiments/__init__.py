"""The paper's simulations as experiments E1 … E10: one small module and one config each.

==========  =====================================  ==============================
experiment  question                               config
==========  =====================================  ==============================
E1          emergence: trained vs untrained         ``configs/e1_emergence.toml``
E2          regimes: independent vs Ising coupling  ``configs/e2_regimes.toml``
E3          dynamics over steps; GD vs Adam         ``configs/e3_dynamics.toml``
E4          architecture of f                       ``configs/e4_architecture.toml``
E5          scale: d and m                          ``configs/e5_scale.toml``
E6          inner products (heatmaps)               ``configs/e6_inner_products.toml``
E7          theory: log-odds construction, SVM      ``configs/e7_theory.toml``
E8          losses: CE vs squared vs sigmoid        ``configs/e8_losses.toml``
E9          hierarchy as orthogonality              ``configs/e9_hierarchy.toml``
E10         implicit bias: fixed f, then joint      ``configs/e10_implicit_bias.toml``
==========  =====================================  ==============================

Every experiment module defines ``NAME``, ``STEM`` (its config's file stem), ``TITLE``, ``QUESTION``,
a frozen ``Settings`` dataclass for its ``[experiment]`` section (always with ``n_seeds`` and
``first_seed``), and ``run(cfg, report, *, progress=True) -> headline``: ``cfg`` is a typed
:class:`~linrep.experiments.config.ExperimentConfig` (``cfg.settings``, ``cfg.latent``,
``cfg.model``, ``cfg.train``, ``cfg.seeds``; never the raw TOML dict), ``report`` a
:class:`linrep.report.Report` to fill, and the headline a ``{name: Summary}`` dict of the numbers the
index shows. A module may also define ``title(cfg) -> str``, a title that follows the config (E5
names the m range it runs). ``run`` trains through :mod:`~linrep.experiments.training`, measures with
:mod:`linrep.geometry` / :mod:`linrep.theory`, summarises with :mod:`~linrep.experiments.stats` and
formats with :mod:`~linrep.experiments.cells`. :func:`run_experiment` does the rest (config,
``--quick``, writing); :func:`reproduce` runs several and writes an index report.

Python use::

    from linrep.experiments import run_experiment
    run = run_experiment("E1", "runs/e1", quick=True)
    run.headline["same_concept_cosine"].mean          # a Summary: mean, ci, n, per_seed
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, did_you_mean

__all__ = ["EXPERIMENTS", "ExperimentRun", "run_experiment", "reproduce", "experiment_module"]

EXPERIMENTS: dict[str, str] = {
    "E1": "e1_emergence",
    "E2": "e2_regimes",
    "E3": "e3_dynamics",
    "E4": "e4_architecture",
    "E5": "e5_scale",
    "E6": "e6_inner_products",
    "E7": "e7_theory",
    "E8": "e8_losses",
    "E9": "e9_hierarchy",
    "E10": "e10_implicit_bias",
}
"""Experiment name → module (and config file stem)."""


def experiment_module(name: str):
    """The module of experiment ``name`` (``"E1"`` … ``"E10"``, case-insensitive)."""
    key = name.strip().upper()
    if key not in EXPERIMENTS:
        raise ConfigError(f"unknown experiment '{name}'{did_you_mean(key, EXPERIMENTS)}")
    return importlib.import_module(f"{__name__}.{EXPERIMENTS[key]}")


@dataclass(frozen=True)
class ExperimentRun:
    """What :func:`run_experiment` returns (and the ``reproduce`` index lists).

    Attributes:
        name: ``"E1"`` …; title: its title; headline: ``{name: Summary}`` (or plain values);
        out: the report folder; wall_time_s: seconds; figures: paths relative to ``out``;
        mode: ``"quick"`` or ``"full"``.
    """

    name: str
    title: str
    headline: dict[str, Any]
    out: str
    wall_time_s: float
    figures: list[str] = field(default_factory=list)
    mode: str = "full"

    def to_json(self) -> dict[str, Any]:
        from ..io import to_jsonable

        return to_jsonable(self)


def run_experiment(
    name: str,
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    config: str | os.PathLike | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
) -> dict[str, Any]:
    """Run one experiment and write its report folder.

    Args:
        name: ``"E1"`` … ``"E10"``.
        out_dir: folder for ``report.html``, ``report.md``, ``results.json`` and ``figures/``.
        quick: apply the config's ``[quick.*]`` overrides (fewer seeds/steps, same code paths).
        config: config file (default ``configs/<stem>.toml``).
        overrides: ``section.key=value`` strings applied last.
        progress: show progress bars.

    Returns:
        :class:`ExperimentRun`.
    """
    from ..io import ensure_out_dir
    from ..report import Report
    from .config import experiment_config_path, load_config

    mod = experiment_module(name)
    path = Path(config) if config is not None else experiment_config_path(mod.STEM)
    cfg = load_config(path, mod.Settings, quick=quick, overrides=overrides)
    out = ensure_out_dir(out_dir)
    t0 = time.perf_counter()
    title = _title(mod, cfg)
    rep = Report(
        f"{mod.NAME} — {title}", config=cfg.to_json(), seeds=cfg.seeds, summary=mod.QUESTION
    )
    headline = mod.run(cfg, rep, progress=progress)
    mode = "quick" if quick else "full"
    rep.results["headline"] = headline
    rep.set_metadata(experiment=mod.NAME, mode=mode, config_file=str(path))
    wall = time.perf_counter() - t0
    rep.write(out, wall_time_s=wall)
    figures = [f"figures/{n}.png" for n in rep.figure_files]
    return ExperimentRun(mod.NAME, title, headline, str(out), wall, figures, mode)


def _title(mod, cfg) -> str:
    """The module's ``title(cfg)`` when it has one (a title that follows the config), else TITLE."""
    return mod.title(cfg) if hasattr(mod, "title") else mod.TITLE


def _finished(mod, folder: Path, quick: bool) -> ExperimentRun | None:
    """The run already in ``folder`` if it used this mode and this resolved config, else None."""
    from ..io import read_json, to_jsonable
    from .config import experiment_config_path, load_config

    if not (folder / "results.json").is_file():
        return None
    doc = read_json(folder / "results.json", "results file")
    mode = "quick" if quick else "full"
    cfg = load_config(experiment_config_path(mod.STEM), mod.Settings, quick=quick)
    meta = doc.get("metadata", {}) if isinstance(doc, dict) else {}
    if meta.get("mode") != mode or doc.get("config") != to_jsonable(cfg.to_json()):
        return None
    headline = doc.get("results", {}).get("headline", {})
    wall = float(meta.get("wall_time_s", 0.0))
    return ExperimentRun(
        mod.NAME, _title(mod, cfg), headline, str(folder), wall, doc["figures"], mode
    )


def reproduce(
    names: Sequence[str],
    out_dir: str | os.PathLike,
    *,
    quick: bool = False,
    progress: bool = True,
    resume: bool = False,
) -> list[ExperimentRun]:
    """Run several experiments into ``out_dir/<stem>/`` and write an index report in ``out_dir``.

    Args:
        names: experiment names, or ``["all"]``.
        out_dir: output folder.
        quick: quick mode for every experiment.
        progress: show progress bars and a one-line summary per experiment.
        resume: keep an experiment already in ``out_dir/<stem>/`` when its results were made with
            the same mode and resolved config (an interrupted ``reproduce all`` continues there).

    Returns:
        The :func:`run_experiment` summaries, in order.
    """
    from ..io import ensure_out_dir
    from .index import write_index

    if not names or any(n.lower() == "all" for n in names):
        names = list(EXPERIMENTS)
    # validate every name before running anything; an experiment named twice runs once
    mods = list(dict.fromkeys(experiment_module(n) for n in names))
    out = ensure_out_dir(out_dir)
    t0 = time.perf_counter()
    summaries = []
    for mod in mods:
        s = _finished(mod, out / mod.STEM, quick) if resume else None
        s = s or run_experiment(mod.NAME, out / mod.STEM, quick=quick, progress=progress)
        summaries.append(s)
        if progress:
            # relative to the output folder: the CLI may be writing into a staging folder
            print(f"{mod.NAME} done in {s.wall_time_s:.1f} s -> {mod.STEM}/report.html")
    write_index(summaries, out, quick=quick, wall_time_s=time.perf_counter() - t0)
    return summaries
