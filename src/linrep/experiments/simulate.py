"""``linrep simulate``: train one config (any seeds) and measure its concept geometry.

Writes ``metrics.json`` (the headline metrics: mean over concepts, per-concept lists and 95 % seed
intervals, Euclidean unless the key ends in ``_causal`` / ``_random``), the training outputs of
:func:`linrep.learn.fit` in ``train/`` (history.csv, parameters, checkpoint), and the report files
(``report.html``, ``report.md``, ``results.json``, ``figures/``).

Config sections: ``[latent]``, ``[model]``, ``[train]`` and optionally ``[simulate]``
(:class:`SimulateSettings`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..geometry.simulation import COSINE_KEYS, IDENTIFIABLE_KEYS, IDENTIFIABLE_SUFFIX
from ..geometry.simulation import SUMMARY_KEYS as METRIC_KEYS

__all__ = ["SimulateSettings", "simulate", "METRIC_KEYS"]


@dataclass(frozen=True)
class SimulateSettings:
    """``[simulate]`` section: what ``linrep simulate`` measures."""

    seeds: list[int] | None = None
    """Seeds of the ensemble (default: ``[train.seed]``; ``--seeds`` overrides)."""
    inner_products: list[str] = field(default_factory=lambda: ["euclidean", "causal"])
    """Inner products of the cosine metrics; keys of non-Euclidean ones get the suffix ``_<name>``.
    (Causal cosines are only informative when the vocabulary is larger than d + 1.)"""
    probes: bool = False
    """Also report linear-probe accuracy of each known concept from f(ξ) (slow)."""
    track: bool = True
    """Follow the Euclidean metrics over training (a metric hook every ``train.log_every`` steps)."""


def _summaries(per_run: Sequence[dict[str, Any]], keys: Sequence[str], suffix: str) -> dict:
    from .stats import summarise

    out: dict[str, Any] = {}
    for k in keys:
        if k not in per_run[0]:
            continue
        s = summarise([r[k] for r in per_run]).to_json()
        pc = np.array([r.get(f"{k}_per_concept", []) for r in per_run], dtype=float)  # (K, m)
        if pc.size:
            s["per_concept"] = [summarise(pc[:, i]).to_json() for i in range(pc.shape[1])]
            s["per_concept_mean"] = [c["mean"] for c in s["per_concept"]]
        out[k + suffix] = s
    return out


def _resolve(config, seeds, overrides) -> tuple[Any, dict[str, Any], list[int]]:
    """(typed config, raw dict, seeds) of a ``linrep simulate`` call."""
    from ..config import apply_overrides, check_sections, load_toml
    from .config import ExperimentConfig, known_keys

    raw = dict(config) if isinstance(config, dict) else load_toml(config)
    check_sections(raw, ("latent", "model", "train", "simulate"), where=str(config)[:200])
    if overrides:
        known = known_keys()
        known["simulate"] = list(SimulateSettings.__dataclass_fields__)
        apply_overrides(raw, overrides, known)
    cfg = ExperimentConfig.from_raw(raw, SimulateSettings, str(config)[:200], section="simulate")
    if isinstance(seeds, str):
        from ..limits import parse_seeds

        seeds = parse_seeds(seeds)
    if seeds is None:
        seeds = cfg.settings.seeds or [cfg.train.seed]
    return cfg, raw, [int(s) for s in seeds]


def _measure(latent, res, settings: SimulateSettings) -> tuple[dict[str, Any], dict[str, list]]:
    """metrics.json's ``metrics`` (raw and identifiable, per inner product) and per-run dicts."""
    from .stats import biases, run_metrics, summarise

    f, g, b = res.embeddings(), res.unembeddings(), biases(res)
    metrics: dict[str, Any] = {}
    per_inner: dict[str, list[dict[str, Any]]] = {}
    for ip in settings.inner_products:
        probes = settings.probes and ip == "euclidean"
        per_run = run_metrics(latent, f, g, inner=ip, probes=probes, bias=b)
        per_inner[ip] = per_run
        keys = METRIC_KEYS if ip == "euclidean" else COSINE_KEYS
        keys = (*keys, *IDENTIFIABLE_KEYS, *(("probe_accuracy",) if probes else ()))
        metrics.update(_summaries(per_run, keys, "" if ip == "euclidean" else f"_{ip}"))
    first = next(iter(per_inner.values()))
    metrics["identifiable_rank"] = summarise([r["identifiable_rank"] for r in first]).to_json()
    metrics["excess_loss"] = summarise([r["excess_loss"] for r in res.final]).to_json()
    return metrics, per_inner


NOTES = {
    "intervals": "95 % Student-t intervals over seeds (n = number of seeds)",
    "cross_pair_abs_cosine": "mean |cos| over all steering-vector pairs of different concepts",
    "cross_concept_abs_cosine": "mean |off-diagonal| of the concept-direction cosine matrix",
    "suffixes": "no suffix = Euclidean inner product; _causal / _random = other inner products",
    "identifiable": "<metric>_identifiable: the same metric of P_F g (g projected on span{f(ξ)}, the "
    "only directions any logit depends on; rank F = identifiable.rank of d dimensions) and of f "
    "projected on span{g(y) − g(y')}; conclusions rest on these (docs/theory.md §3.4)",
    "log_odds": "learned log-odds are f·Δg + Δb when the model has a bias b (model.unembedding_bias)",
}


def simulate(
    config: str | os.PathLike | dict[str, Any],
    out_dir: str | os.PathLike,
    *,
    seeds: Sequence[int] | str | None = None,
    overrides: Sequence[str] = (),
    progress: bool = True,
    resume: bool = False,
) -> dict[str, Any]:
    """Train the config's model on its latent model and write metrics + report.

    Args:
        config: a TOML path or an already parsed dict with ``[latent]``, ``[model]``, ``[train]``,
            optional ``[simulate]``.
        out_dir: output folder.
        seeds: seeds of the ensemble, a list or a ``"0-9"`` / ``"1,4,7"`` spec (overrides
            ``[simulate] seeds`` and ``train.seed``).
        overrides: ``section.key=value`` strings (``--set``).
        progress: show a progress bar.
        resume: continue training from ``out_dir/train/checkpoint.pt`` if it exists.

    Returns:
        The content of ``metrics.json``: ``metrics`` (each key a summary over seeds; raw and
        ``_identifiable`` twins), ``identifiable`` (``rank`` per run, ``d``, ``rtol``), ``seeds``,
        ``notes``, ``config``, ...
    """
    from ..geometry import DEFAULT_RTOL, metric_hook
    from ..io import ensure_out_dir, run_metadata, write_json
    from .training import train

    t0 = time.perf_counter()
    cfg, raw, seeds = _resolve(config, seeds, overrides)
    settings = cfg.settings
    out = ensure_out_dir(out_dir)
    latent = cfg.latent_model()
    hooks = {"euclid": metric_hook(latent)} if settings.track else None
    res = train(
        latent, cfg, seeds, progress=progress, metrics=hooks, out_dir=out / "train", resume=resume
    )
    metrics, per_inner = _measure(latent, res, settings)
    d = cfg.model.d
    ranks = [int(r["identifiable_rank"]) for r in next(iter(per_inner.values()))]
    doc = {
        "metrics": metrics,
        "identifiable": {"rank": ranks, "d": d, "rtol": DEFAULT_RTOL},
        "concepts": latent.names,
        "seeds": seeds,
        "inner_products": settings.inner_products,
        "notes": dict(NOTES),
        "config": raw,
        "train_seconds": res.seconds,
        "metadata": run_metadata(),
    }
    if "causal" in settings.inner_products and latent.n_tokens <= d + 1:
        doc["notes"]["causal_degenerate"] = (
            f"V = {latent.n_tokens} ≤ d + 1 = {d + 1}: causal whitening maps any unembedding to a "
            "regular simplex, so the _causal cosines are fixed by the pair structure alone"
        )
    write_json(out / "metrics.json", doc)
    _write_report(out, cfg, latent, res, doc, per_inner, time.perf_counter() - t0)
    return doc


def _write_report(out, cfg, latent, res, doc, per_inner, seconds: float) -> None:
    from ..report import Report

    resolved = {**cfg.to_json(), "train": {**cfg.to_json()["train"], "seed": "per run"}}
    resolved["simulate"] = resolved.pop("experiment")
    rep = Report(
        f"linrep simulate: {latent.m} concepts ({latent.config.kind}), {cfg.model.encoder} encoder",
        config=resolved,
        seeds=doc["seeds"],
        summary="One trained ensemble of the config: concept geometry at the end of training "
        "(mean ± 95 % CI over seeds) and over training steps.",
    )
    _fill_report(rep, latent, res, doc, per_inner, cfg.settings)
    rep.results.update(doc)
    rep.write(out, wall_time_s=seconds)


def _geometry_rows(metrics: dict[str, Any], inner_products: Sequence[str]) -> list[dict]:
    """One table row per (inner product, raw | identifiable)."""
    from .cells import ci_cell, label

    rows = []
    for ip in inner_products:
        sfx = "" if ip == "euclidean" else f"_{ip}"
        for view, twin in (("raw", ""), ("inside span{f}", IDENTIFIABLE_SUFFIX)):
            cells = {}
            for k in METRIC_KEYS:
                key = (k + twin + sfx) if k in COSINE_KEYS else (k + sfx)
                if key in metrics:
                    cells[label(k)] = ci_cell(metrics[key])
            rows.append({"inner product": ip, "geometry": view, **cells})
    return rows


def _fill_report(rep, latent, res, doc, per_inner, settings) -> None:
    from ..report import figures
    from .cells import ci_cell, label
    from .stats import band, history_arrays

    metrics, ident = doc["metrics"], doc["identifiable"]
    rep.add_heading("Concept geometry at the end of training")
    rep.add_text(
        f"The context embeddings span F = {sorted(set(ident['rank']))} of d = {ident['d']} "
        f"dimensions (numerical rank, rtol {ident['rtol']:g}). Logits depend on g only through its "
        "projection on span{f(ξ)}, so the rows **inside span{f}** are what training determined; "
        "the **raw** rows also contain whatever the initialisation left in the other d − F "
        "directions. Conclusions rest on the identifiable rows (docs/theory.md §3.4)."
    )
    d = ident["d"]
    if "causal" in settings.inner_products and latent.n_tokens <= d + 1:
        rep.add_text(
            f"**Caveat:** the vocabulary has V = {latent.n_tokens} ≤ d + 1 = {d + 1} tokens, so "
            "whitening by the unembedding covariance maps the tokens to a regular simplex whatever "
            "was learned: the causal cosines below are fixed by the pair structure and carry no "
            "information about training (see linrep.geometry.simulation)."
        )
    rep.add_table(
        _geometry_rows(metrics, settings.inner_products),
        caption="Means over concepts; mean ± 95 % CI over seeds",
    )
    rep.add_table(
        [{"excess loss (nats)": ci_cell(metrics["excess_loss"])}], caption="Fit to the data"
    )
    per = []
    for i, name in enumerate(latent.names):
        row = {"concept": name}
        for k in (
            "same_concept_cosine",
            "same_concept_cosine_identifiable",
            "alignment_cosine",
            "log_odds_matching_error",
        ):
            row[label(k)] = ci_cell(metrics[k]["per_concept"][i])
        per.append(row)
    rep.add_table(per, caption="Per concept (Euclidean)")
    mats = {}
    for ip, per_run in per_inner.items():
        for tag, key in (
            ("", "direction_cosine_matrix"),
            (" in span{f}", "direction_cosine_matrix_identifiable"),
        ):
            mats[ip + tag] = np.abs(np.mean([r[key] for r in per_run], axis=0))
    rep.add_figure(
        figures.heatmaps(
            mats, latent.names, title="|cos| between concept directions (mean over seeds)"
        ),
        "concept_direction_heatmaps",
        caption="Mean over seeds of |cos(ḡᵢ, ḡⱼ)| under each inner product, raw and inside span{f}.",
    )
    if settings.track:
        panels = {}
        for keys, title in (
            (("same_concept_cosine", "same_concept_cosine_identifiable"), "same-concept cos"),
            (("alignment_cosine", "alignment_cosine_identifiable"), "alignment"),
            (("excess_loss",), "excess loss (nats)"),
            (("param_norm",), "parameter norm"),
        ):
            panels[title] = {}
            for key in keys:
                col = key if key in ("excess_loss", "param_norm") else f"euclid.{key}"
                steps, vals = history_arrays(res.history, col)
                view = "inside span{f}" if key.endswith(IDENTIFIABLE_SUFFIX) else "raw"
                panels[title][view if len(keys) > 1 else "mean ± 95 % CI"] = band(vals)
        rep.add_figure(
            figures.lines_vs_step(steps, panels, logy=("excess loss (nats)",)),
            "metrics_vs_step",
            caption="Metrics over training, raw and inside span{f} (log step axis; step 0 omitted).",
        )
