"""Sweep summaries: every metric against every swept parameter, mean ± 95 % CI over seeds.

For a swept parameter p and a metric μ, the runs are grouped by (value of p, values of the other
swept parameters); each cell's seeds give mean ± t-interval (:func:`linrep.geometry.seed_interval`,
kept inside the metric's range: [−1, 1] for cosines). A figure shows μ against p — on a numeric
axis (log when the values span a factor ≥ 20) when p is a number, one tick per value otherwise —
with one series per combination of the other parameters (at most :data:`MAX_SERIES`; beyond that
the other parameters are pooled and the interval is over all their runs). The untrained models'
mean is drawn as a dashed reference line where measured. Case names and other swept strings come
from the user's sweep file: they are shown literally (:func:`linrep.report.escape`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .spec import SweepSpec
from .table import LEADING, TRAILING

__all__ = ["metric_columns", "summarize", "write_report", "MAX_SERIES"]

MAX_SERIES = 6
HEADLINE = (
    "excess_loss",
    "same_concept_cosine",
    "cross_concept_abs_cosine",
    "alignment_cosine",
    "log_odds_matching_error",
)
"""Metrics shown first (others follow alphabetically)."""


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def metric_columns(rows: Sequence[dict[str, Any]], swept: Sequence[str]) -> list[str]:
    """Numeric result columns that are metrics of the trained model (not config, not bookkeeping)."""
    skip = set(LEADING) | set(TRAILING) | set(swept) | {"time_utc", "step"}
    names: dict[str, None] = {}
    for r in rows:
        for k, v in r.items():
            if k in skip or k.startswith("untrained_") or "." in k or not _is_number(v):
                continue
            names[k] = None
    head = [m for m in HEADLINE if m in names]
    return head + sorted(m for m in names if m not in head)


def _label(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _key(v: Any) -> Any:
    """Sort key: numbers by value, then everything else by text."""
    return (0, float(v), "") if _is_number(v) else (1, 0.0, str(v))


def _interval(values: Sequence[float], metric: str) -> tuple[float, float, float, int]:
    from ..geometry import seed_interval, support_of

    iv = seed_interval(np.asarray(values, dtype=float), support=support_of(metric))
    return iv.mean, iv.low, iv.high, iv.n


def summarize(rows: Sequence[dict[str, Any]], swept: Sequence[str]) -> list[dict[str, Any]]:
    """One row per setting (combination of swept values): n seeds ok/failed and mean ± CI of each
    metric (keys ``<metric>``, ``<metric>_lo``, ``<metric>_hi``)."""
    metrics = metric_columns(rows, swept)
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault(tuple(_label(r.get(p)) for p in swept), []).append(r)
    out = []
    for key, members in cells.items():
        ok = [r for r in members if r.get("status") == "ok"]
        row: dict[str, Any] = dict(zip(swept, key, strict=True))
        row["n_ok"] = len(ok)
        row["n_failed"] = len(members) - len(ok)
        for m in metrics:
            mean, lo, hi, _ = _interval([r[m] for r in ok if _is_number(r.get(m))], m)
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = mean, lo, hi
        out.append(row)
    return out


def _figure(rows, metric: str, param: str, others: list[str]):
    from ..report import figures

    ok = [r for r in rows if r.get("status") == "ok" and _is_number(r.get(metric))]
    values = sorted({r.get(param) for r in ok if r.get(param) is not None}, key=_key)
    if not values:
        return None
    combos = sorted({tuple(_label(r.get(o)) for o in others) for r in ok})
    pooled = len(combos) > MAX_SERIES
    if pooled or not others:
        combos = [()]
    series = {}
    for combo in combos:
        mean, lo, hi = [], [], []
        for v in values:
            sel = [
                r[metric]
                for r in ok
                if r.get(param) == v
                and (not combo or tuple(_label(r.get(o)) for o in others) == combo)
            ]
            a, b, c, _ = _interval(sel, metric)
            mean.append(a)
            lo.append(b)
            hi.append(c)
        label = ", ".join(f"{o.split('.')[-1]}={c}" for o, c in zip(others, combo, strict=False))
        series[label or "all runs"] = (np.array(mean), np.array(lo), np.array(hi))
    hlines = {}
    base = [r.get(f"untrained_{metric}") for r in ok]
    base = [b for b in base if _is_number(b) and math.isfinite(b)]
    if base:
        hlines["untrained (mean)"] = float(np.mean(base))
    kw = {"ylabel": metric, "xlabel": param, "title": f"{metric} vs {param}", "hlines": hlines}
    if all(_is_number(v) for v in values):
        fig = figures.intervals_vs_value([float(v) for v in values], series, **kw)
    else:
        fig = figures.point_intervals([_label(v) for v in values], series, **kw)
    return fig


def _literal(v: Any) -> Any:
    """A table cell from the user's sweep file (case name, swept string, error): shown literally."""
    from ..report import escape

    return escape(v) if isinstance(v, str) else v


def write_report(
    out: Path, spec: SweepSpec, rows: Sequence[dict[str, Any]], wall_time_s: float
) -> Path:
    """Write ``report.html`` (+ ``report.md``, ``results.json``, ``figures/``) into ``out``."""
    from ..report import Report, escape

    swept = [p for p in spec.factors if any(p in r for r in rows)]
    metrics = metric_columns(rows, spec.swept)
    seeds = sorted({int(r["seed"]) for r in rows if _is_number(r.get("seed"))})
    n_ok = sum(r.get("status") == "ok" for r in rows)
    failed = [r for r in rows if r.get("status") != "ok"]
    title = f"Sweep {escape(spec.path.stem)}" if spec.path else "Sweep"
    rep = Report(
        title,
        config={**spec.base, "sweep": _jsonable_sweep(spec)},
        seeds=seeds,
        summary=(
            f"{len(rows)} runs ({n_ok} ok, {len(failed)} failed) over "
            f"{', '.join(swept) or 'seeds only'}; {len(seeds)} seeds per setting. Each figure "
            "shows one metric against one swept parameter, mean ± 95 % t-interval over seeds."
        ),
    )
    _settings_table(rep, rows, swept, metrics)
    _metric_figures(rep, rows, spec, swept, metrics)
    if failed:
        rep.add_heading("Failed runs")
        rep.add_table(
            [
                {
                    "run_id": r["run_id"],
                    **{p: _literal(r.get(p)) for p in swept},
                    "seed": r.get("seed"),
                    "error": _literal(r.get("error")),
                }
                for r in failed
            ],
            caption="recorded after Ray's retries and a solo retry; re-run with --resume to retry",
        )
    rep.set_metadata(results_table="results.csv", n_runs=len(rows))
    paths = rep.write(out, wall_time_s=wall_time_s)
    return paths["html"]


def _settings_table(rep, rows, swept: list[str], metrics: list[str]) -> None:
    """One row per setting: its swept values, runs ok/failed, mean ± CI of the first metrics."""
    from ..report import format_ci

    table = summarize(rows, swept)
    rep.add_heading("Settings")
    cols = [*swept, "n_ok", "n_failed"]
    shown = metrics[:6]
    cells = []
    for t in table:
        c = {k: _literal(t[k]) for k in cols}
        for m in shown:
            lo, hi = t[f"{m}_lo"], t[f"{m}_hi"]
            c[m] = format_ci(t[m], lo, hi) if math.isfinite(lo) else t[m]
        cells.append(c)
    rep.add_table(cells, columns=[*cols, *shown], caption="mean ± 95 % CI over seeds")
    rep.results["settings"] = table


def _others(spec: SweepSpec, swept: list[str], param: str) -> list[str]:
    """The swept parameters that make separate series in a figure against ``param``."""
    # random-search keys are drawn together: one is not a factor crossed with another
    rand = spec.sweep.random
    return [o for o in swept if o != param and not (param in rand and o in rand)]


def _metric_figures(rep, rows, spec: SweepSpec, swept: list[str], metrics: list[str]) -> None:
    """One figure per (plotted metric, swept parameter); the pooling note is said once."""
    plotted = spec.sweep.report_metrics or metrics  # headline metrics first
    missing = [m for m in plotted if m not in metrics]
    if missing:
        rep.add_text(f"Not measured, so not plotted: {', '.join(missing)}.")
    ok = [r for r in rows if r.get("status") == "ok"]
    pooled = [
        p
        for p in swept
        if len({tuple(_label(r.get(o)) for o in _others(spec, swept, p)) for r in ok}) > MAX_SERIES
    ]
    if pooled:
        rep.add_text(
            f"In the figures against {', '.join(pooled)} the other swept parameters are pooled "
            f"(more than {MAX_SERIES} series would be unreadable); the Settings table keeps every "
            "combination."
        )
    for metric in (m for m in plotted if m in metrics):
        rep.add_heading(metric, level=3)
        for param in swept:
            fig = _figure(rows, metric, param, _others(spec, swept, param))
            if fig is not None:
                name = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{metric}__{param}")
                rep.add_figure(fig, name, caption=f"{metric} vs {param}.")


def _jsonable_sweep(spec: SweepSpec) -> dict[str, Any]:
    from dataclasses import asdict

    return {k: v for k, v in asdict(spec.sweep).items() if v not in (None, {}, [])}
