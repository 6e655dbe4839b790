"""Sweep files: a base config plus a ``[sweep]`` section, expanded into individual runs.

A sweep file is a training config (sections ``[latent]``, ``[model]``, ``[train]``, or a top-level
``base = "other.toml"`` whose sections the inline ones override key by key; other sections of the
base, such as an experiment's ``[simulate]``, are ignored) plus::

    [sweep]
    seeds = "0-9"               # or [0, 3, 7], or 10 (= 0..9)
    n_random = 0                # number of random-search draws (0: grid only)

    [sweep.grid]                # full factorial product over these values
    "model.d" = [8, 16, 32, 64]

    [sweep.random]              # n_random draws of these distributions, crossed with the grid
    "train.lr" = { log_uniform = [0.1, 3.0] }

    [[sweep.cases]]             # named bundles of settings that change together
    name = "independent"
    "latent.coupling_sd" = 0.0

Runs = cases × grid points × random draws × seeds. Every key is a dotted ``section.key`` name of the
training config (unquoted dotted keys such as ``model.d = [8, 16]`` work too: TOML nests them and
we flatten them back). Each run is identified by a hash of its fully resolved config and seed, so
re-running a sweep recognises the runs it already finished.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..config import load_toml, section_from_dict
from ..errors import ConfigError, did_you_mean
from ..limits import INT64_MAX, check_count, parse_seeds

__all__ = [
    "SweepConfig",
    "SweepSpec",
    "Run",
    "load_sweep",
    "sweep_from_dict",
    "config_sections",
    "parse_seeds",
    "canonical_json",
]

TRAIN_SECTIONS = ("latent", "model", "train")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform", "choice")
MAX_RUNS = 100_000


@dataclass
class SweepConfig:
    """The ``[sweep]`` section: which runs to make and how to pack them into Ray tasks."""

    seeds: Any = None
    """Training seeds of every setting: a list ``[0, 3]``, a range ``"0-9"`` or a count ``10``
    (= 0..9). Default: the base config's ``train.seed``."""
    grid: dict[str, Any] = field(default_factory=dict)
    """Dotted config key → list of values; the sweep takes the full product."""
    random: dict[str, Any] = field(default_factory=dict)
    """Dotted config key → a distribution ``{uniform = [a, b]}``, ``{log_uniform = [a, b]}``,
    ``{int_uniform = [a, b]}`` (inclusive) or ``{choice = [v1, v2, ...]}``."""
    n_random: int = 0
    """Number of random-search draws (each is crossed with every grid point and seed)."""
    random_seed: int = 0
    """Seed of the random-search draws (the same seed gives the same draws)."""
    cases: list[dict[str, Any]] = field(default_factory=list)
    """Named bundles of settings changed together, e.g. ``{name = "coupled", "latent.coupling_sd" =
    1.0}``; crossed with the grid. ``name`` defaults to ``case<i>``."""
    max_group_size: int = 32
    """Most runs packed into one batched ensemble (= one Ray task). Smaller groups spread one
    setting over more workers; larger ones amortise more per step."""
    retries: int = 2
    """How often Ray retries a task that crashed or raised (deterministic linrep errors such as a
    NaN loss are not retried; the group is split and each run is tried alone)."""
    geometry: bool = True
    """Measure the concept geometry (:func:`linrep.geometry.metric_hook`: same-concept and
    cross-concept cosines, alignment, log-odds matching) of every trained model and, prefixed
    ``untrained_``, of its initialisation (the null)."""
    inner: Literal["euclidean", "causal", "random"] = "euclidean"
    """Inner product of the geometry cosines."""
    probes: bool = False
    """Also measure linear-probe accuracy (cross-validated logistic regression; slow)."""
    report_metrics: list[str] | None = None
    """Metrics plotted in report.html (default: every metric of the trained models, headline
    ones first: excess loss, same-concept cosine, cross-concept |cosine|, alignment cosine,
    log-odds-matching error); every metric is in results.csv either way."""

    def __post_init__(self) -> None:
        if self.n_random < 0:
            raise ConfigError(f"sweep.n_random = {self.n_random} must be ≥ 0")
        check_count(self.n_random, MAX_RUNS, "random draws", "sweep.n_random")
        if self.max_group_size < 1:
            raise ConfigError(f"sweep.max_group_size = {self.max_group_size} must be ≥ 1")
        if self.retries < 0:
            raise ConfigError(f"sweep.retries = {self.retries} must be ≥ 0")
        if self.random and self.n_random == 0:
            raise ConfigError(
                "[sweep.random] is given but sweep.n_random = 0; set n_random to the number of draws"
            )
        if self.n_random and not self.random:
            raise ConfigError(
                f"sweep.n_random = {self.n_random} but [sweep.random] is empty; add distributions"
            )


@dataclass(frozen=True)
class Run:
    """One training run of a sweep: a fully resolved config and one seed."""

    run_id: str
    """12 hex digits: hash of the resolved config and the seed (stable across re-runs)."""
    case: str
    """Name of the case (``""`` without ``[[sweep.cases]]``)."""
    params: dict[str, Any]
    """The swept values of this run, dotted key → value (seed excluded)."""
    seed: int
    config: dict[str, dict[str, Any]]
    """The resolved ``[latent]``, ``[model]``, ``[train]`` tables (``train.seed`` = ``seed``)."""


@dataclass
class SweepSpec:
    """A parsed sweep file: the base config, the ``[sweep]`` section and the expanded runs."""

    path: Path | None
    base: dict[str, dict[str, Any]]
    sweep: SweepConfig
    runs: list[Run]
    swept: list[str]
    """Result-table columns that vary: ``case`` (with named cases), the case keys, grid and random
    keys (dotted names)."""
    factors: list[str]
    """What the report plots metrics against: ``case`` (not its keys, which it determines), grid
    and random keys."""

    @property
    def fingerprint(self) -> str:
        """Hash of the base config: results of two sweeps can share a folder only if it is equal."""
        return _hash(self.base)


# ------------------------------------------------------------------ helpers
def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: equal configs give equal strings."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {obj!r}")


def _hash(obj: Any, n: int = 12) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def config_sections() -> dict[str, type]:
    """The dataclass of every training-config section (imports the learner lazily)."""
    from ..latent import LatentConfig
    from ..learn import ModelConfig, TrainConfig

    return {"latent": LatentConfig, "model": ModelConfig, "train": TrainConfig}


def _flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"d": [8]}}`` → ``{"model.d": [8]}``; quoted dotted keys pass through.

    Config keys have exactly two parts (section.key), so nesting stops there: the value of
    ``train.lr`` in ``[sweep.random]`` stays the table ``{log_uniform = [...]}``.
    """
    out: dict[str, Any] = {}
    for key, value in table.items():
        name = f"{prefix}{key}"
        if "." not in name and isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _is_distribution(value: Mapping[str, Any]) -> bool:
    return len(value) == 1 and next(iter(value)) in DISTRIBUTIONS


def _check_key(name: str, classes: Mapping[str, type], where: str) -> tuple[str, str]:
    section, dot, key = name.partition(".")
    if not dot:
        raise ConfigError(
            f"{where} key '{name}' must be a dotted config key like 'model.d' or 'train.lr'"
        )
    if section not in classes:
        raise ConfigError(f"{where} key '{name}': unknown section{did_you_mean(section, classes)}")
    fields = [f.name for f in dataclasses.fields(classes[section]) if f.init]
    if key not in fields:
        raise ConfigError(
            f"{where} key '{name}': no key '{key}' in [{section}]{did_you_mean(key, fields)}"
        )
    if name == "train.seed":
        raise ConfigError(f"{where} sweeps 'train.seed'; list seeds in [sweep] seeds = ... instead")
    return section, key


def _draw(name: str, dist: Any, rng: np.random.Generator) -> Any:
    if not isinstance(dist, Mapping) or not _is_distribution(dist):
        raise ConfigError(
            f"sweep.random.{name} = {dist!r} must be one table like {{ log_uniform = [0.01, 1] }} "
            f"(kinds: {', '.join(DISTRIBUTIONS)})"
        )
    kind, args = next(iter(dist.items()))
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"sweep.random.{name}: choice needs a non-empty list of values")
        return copy.deepcopy(args[int(rng.integers(len(args)))])
    ok = (
        isinstance(args, list)
        and len(args) == 2
        and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)
    )
    if not ok:
        raise ConfigError(f"sweep.random.{name}: {kind} needs [low, high] with low ≤ high")
    if not all(math.isfinite(a) for a in args):
        raise ConfigError(f"sweep.random.{name}: {kind} bounds {args} must be finite numbers")
    if args[0] > args[1]:
        raise ConfigError(f"sweep.random.{name}: {kind} needs [low, high] with low ≤ high")
    lo, hi = args
    if kind == "uniform":
        return float(rng.uniform(lo, hi))
    if kind == "int_uniform":
        if not (float(lo).is_integer() and float(hi).is_integer()):
            raise ConfigError(f"sweep.random.{name}: int_uniform bounds must be integers")
        if not -INT64_MAX <= lo <= hi < INT64_MAX:
            raise ConfigError(
                f"sweep.random.{name}: int_uniform bounds {args} do not fit in 64 bits"
            )
        return int(rng.integers(int(lo), int(hi) + 1))
    if lo <= 0:
        raise ConfigError(f"sweep.random.{name}: log_uniform needs 0 < low ≤ high")
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# ------------------------------------------------------------------ loading
def load_sweep(path: str | Path) -> SweepSpec:
    """Read and expand a sweep file (``base`` paths are relative to the sweep file)."""
    path = Path(path)
    raw = load_toml(path)
    return sweep_from_dict(raw, path=path)


def _load_base(raw: Mapping[str, Any], path: Path | None) -> dict[str, dict[str, Any]]:
    base_ref = raw.get("base")
    sweep_tbl = raw.get("sweep")
    if isinstance(sweep_tbl, Mapping) and "base" in sweep_tbl:
        if base_ref is not None:
            raise ConfigError("'base' is given twice (top level and in [sweep]); keep one")
        base_ref = sweep_tbl["base"]
    base: dict[str, dict[str, Any]] = {}
    if base_ref is not None:
        if not isinstance(base_ref, str):
            raise ConfigError(f"base = {base_ref!r} must be the path of a .toml config (a string)")
        bpath = Path(base_ref)
        if not bpath.is_absolute() and path is not None:
            bpath = path.parent / bpath
        if not bpath.exists():
            raise ConfigError(
                f"base config '{bpath}' does not exist; 'base' paths are relative to the sweep file"
            )
        braw = load_toml(bpath)
        for key, value in braw.items():
            if key == "sweep" or key == "base":
                raise ConfigError(
                    f"base config '{bpath}' has '{key}'; a base must be a plain config"
                )
            if key not in TRAIN_SECTIONS:
                # other linrep sections ([simulate], [experiment], ...) are not used by a sweep;
                # a near-miss of a training section is a typo, not another command's section
                if difflib.get_close_matches(key, TRAIN_SECTIONS, n=1, cutoff=0.6):
                    raise ConfigError(
                        f"unknown section [{key}] in base config '{bpath}'"
                        f"{did_you_mean(key, TRAIN_SECTIONS)}"
                    )
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"'{key}' in '{bpath}' must be a table ([{key}])")
            base[key] = dict(value)
    for key, value in raw.items():
        if key in ("base", "sweep"):
            continue
        if key not in TRAIN_SECTIONS:
            raise ConfigError(
                f"unknown section [{key}] in sweep file{did_you_mean(key, (*TRAIN_SECTIONS, 'sweep'))}"
            )
        if not isinstance(value, Mapping):
            raise ConfigError(f"'{key}' in the sweep file must be a table ([{key}])")
        base.setdefault(key, {}).update(value)
    return {s: base.get(s, {}) for s in TRAIN_SECTIONS}


def sweep_from_dict(raw: Mapping[str, Any], path: Path | None = None) -> SweepSpec:
    """Parse a sweep document (already read from TOML) and expand it into runs.

    Every run's config is validated with the sections' dataclasses before anything is trained, so a
    bad value anywhere in the grid fails at once with the run's settings named.
    """
    if "sweep" not in raw:
        raise ConfigError(
            "sweep file has no [sweep] section; add one with seeds and a [sweep.grid]"
        )
    if not isinstance(raw["sweep"], Mapping):
        raise ConfigError("'sweep' must be a table ([sweep])")
    base = _load_base(raw, path)
    tbl = {k: v for k, v in raw["sweep"].items() if k != "base"}
    for key in ("grid", "random"):
        if key in tbl and not isinstance(tbl[key], Mapping):
            raise ConfigError(f"sweep.{key} must be a table ([sweep.{key}])")
    if "cases" in tbl and (
        not isinstance(tbl["cases"], list) or not all(isinstance(c, Mapping) for c in tbl["cases"])
    ):
        raise ConfigError("sweep.cases must be an array of tables ([[sweep.cases]])")
    tbl["grid"] = _flatten(tbl.get("grid", {}))
    tbl["random"] = _flatten(tbl.get("random", {}))
    tbl["cases"] = [_flatten(c) for c in tbl.get("cases", [])]
    cfg = section_from_dict(SweepConfig, tbl, "sweep")
    classes = config_sections()

    # validate the base on its own (clear errors before any expansion)
    for section, cls in classes.items():
        section_from_dict(cls, base[section], section)

    for name, values in cfg.grid.items():
        _check_key(name, classes, "sweep.grid")
        if not isinstance(values, list) or not values:
            raise ConfigError(
                f"sweep.grid key '{name}' = {values!r} must be a non-empty list of values"
            )
    for name in cfg.random:
        _check_key(name, classes, "sweep.random")
        if name in cfg.grid:
            raise ConfigError(f"'{name}' is both in [sweep.grid] and [sweep.random]; keep one")
    case_list: list[tuple[str, dict[str, Any]]] = []
    for i, case in enumerate(cfg.cases):
        case = dict(case)
        name = case.pop("name", f"case{i}")
        if not isinstance(name, str) or not name:
            raise ConfigError(f"sweep.cases[{i}].name must be a non-empty string")
        for key in case:
            _check_key(key, classes, f"sweep.cases[{i}]")
            if key in cfg.grid or key in cfg.random:
                raise ConfigError(f"'{key}' is set by a case and swept too; keep one")
        case_list.append((name, case))
    names = [n for n, _ in case_list]
    if len(set(names)) != len(names):
        raise ConfigError("two [[sweep.cases]] share a name; give each case its own name")
    if not case_list:
        case_list = [("", {})]

    seeds = (
        parse_seeds(cfg.seeds, "sweep.seeds")
        if cfg.seeds is not None
        else [int(base["train"].get("seed", 0))]
    )

    grid_keys = list(cfg.grid)
    # count first: a few lines of TOML can describe billions of runs
    n_points = math.prod(len(v) for v in cfg.grid.values())
    n_runs = len(case_list) * n_points * max(cfg.n_random, 1) * len(seeds)
    check_count(n_runs, MAX_RUNS, "runs", "the sweep")
    grid_points = [
        dict(zip(grid_keys, vals, strict=True)) for vals in itertools.product(*cfg.grid.values())
    ]
    rng = np.random.default_rng(cfg.random_seed)
    draws = [
        {name: _draw(name, dist, rng) for name, dist in cfg.random.items()}
        for _ in range(cfg.n_random)
    ] or [{}]

    case_keys = sorted({k for _, c in case_list for k in c})
    named = ["case"] if case_list[0][0] else []
    swept = named + case_keys + grid_keys + list(cfg.random)
    factors = named + grid_keys + list(cfg.random)
    runs: list[Run] = []
    checked: set[str] = set()
    for (case_name, case), point, draw in itertools.product(case_list, grid_points, draws):
        params = {**case, **point, **draw}
        config = copy.deepcopy(base)
        for name, value in params.items():
            section, key = name.split(".", 1)
            config[section][key] = copy.deepcopy(value)
        sig = canonical_json(config)
        if sig not in checked:  # validate each distinct setting once, naming its swept values
            checked.add(sig)
            for section, cls in classes.items():
                try:
                    section_from_dict(cls, config[section], section)
                except ConfigError as e:
                    label = ", ".join(f"{k}={v!r}" for k, v in params.items()) or "base config"
                    raise ConfigError(f"sweep run with {label}: {e}") from None
        for seed in seeds:
            cfg_s = copy.deepcopy(config)
            cfg_s["train"]["seed"] = seed
            run_id = _hash({"config": cfg_s, "seed": seed})
            runs.append(Run(run_id, case_name, params, seed, cfg_s))
    ids = [r.run_id for r in runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(
            "two runs of the sweep have the same config and seed (repeated grid values or cases); "
            "remove the duplicates"
        )
    return SweepSpec(path=path, base=base, sweep=cfg, runs=runs, swept=swept, factors=factors)
