"""Experiment configs: the TOML file (with ``--quick`` and ``--set``) → one typed, frozen object.

An experiment config is a TOML file with ``[latent]``, ``[model]`` and ``[train]`` sections (the
learner's own dataclasses), an ``[experiment]`` section read into the experiment module's frozen
``Settings`` dataclass, and optional ``[quick.<section>]`` tables merged over the sections in
``--quick`` mode (fewer seeds/steps, same code paths). :func:`load_config` returns an
:class:`ExperimentConfig`; experiments never see the raw TOML dict.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ..config import check_sections, load_toml, section_from_dict
from ..errors import ConfigError

if TYPE_CHECKING:
    from ..latent import LatentConfig, LatentModel
    from ..learn import ModelConfig, TrainConfig

__all__ = [
    "CONFIG_SECTIONS",
    "ExperimentConfig",
    "configs_dir",
    "experiment_config_path",
    "load_config",
    "load_raw_config",
    "merge_quick",
    "deep_merge",
    "known_keys",
    "seeds_of",
]

CONFIG_SECTIONS = ("experiment", "latent", "model", "train", "quick")

S = TypeVar("S")


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


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated recursively with ``over`` (tables merge, other values replace), new dict."""
    out = copy.deepcopy(dict(base))
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


def known_keys(settings_cls: type | None = None) -> dict[str, list[str]]:
    """Valid keys per section (for ``--set`` checking): latent, model, train and the experiment's."""
    from ..latent import LatentConfig
    from ..learn.config import config_keys

    known = {"latent": [f.name for f in dataclasses.fields(LatentConfig)], **config_keys()}
    if settings_cls is not None:
        known["experiment"] = [f.name for f in dataclasses.fields(settings_cls)]
    return known


def seeds_of(n_seeds: int, first_seed: int = 0) -> list[int]:
    """The seeds ``first_seed … first_seed + n_seeds − 1`` (clear error if ``n_seeds`` < 1).

    The count and the last seed are checked before the list is built (:mod:`linrep.limits`).
    """
    from ..limits import MAX_SEEDS, check_count, check_seed

    if n_seeds < 1:
        raise ConfigError(f"experiment.n_seeds must be ≥ 1, got {n_seeds}")
    check_count(n_seeds, MAX_SEEDS, "seeds", "experiment.n_seeds")
    check_seed(first_seed, "experiment.first_seed")
    check_seed(first_seed + n_seeds - 1, "experiment.first_seed + n_seeds − 1 (the last seed)")
    return list(range(first_seed, first_seed + n_seeds))


def load_raw_config(
    path: str | os.PathLike,
    quick: bool = False,
    overrides: Sequence[str] = (),
    settings_cls: type | None = None,
) -> dict[str, Any]:
    """Read a config file, apply ``[quick.*]`` (if ``quick``) and ``--set`` overrides; plain dict.

    Args:
        path: the TOML file.
        quick: merge the ``[quick.<section>]`` tables over the sections.
        overrides: ``section.key=value`` strings (checked against the sections' valid keys).
        settings_cls: dataclass of the ``[experiment]`` section (to check its ``--set`` keys).
    """
    from ..config import apply_overrides

    raw = load_toml(path)
    check_sections(raw, CONFIG_SECTIONS, where=str(path))
    raw = merge_quick(raw, quick)
    if overrides:
        apply_overrides(raw, overrides, known_keys(settings_cls))
    return raw


@dataclass(frozen=True)
class ExperimentConfig(Generic[S]):
    """The resolved, typed config of one experiment run.

    Attributes:
        settings: the ``[experiment]`` section as the experiment module's ``Settings`` (frozen).
        latent: the ``[latent]`` section. model: ``[model]``. train: ``[train]``.
        path: the config file it was read from. quick: whether ``[quick.*]`` was applied.
    """

    settings: S
    latent: LatentConfig
    model: ModelConfig
    train: TrainConfig
    path: str = ""
    quick: bool = False

    @classmethod
    def from_raw(
        cls,
        raw: Mapping[str, Any],
        settings_cls: type[S],
        path: str = "",
        quick: bool = False,
        *,
        section: str = "experiment",
    ) -> ExperimentConfig[S]:
        """Type every section of a resolved raw config (unknown keys fail with a suggestion).

        ``section`` names the table read into ``settings_cls`` (``[simulate]`` for ``linrep
        simulate``).
        """
        from ..latent import LatentConfig
        from ..learn import ModelConfig, TrainConfig

        return cls(
            settings=section_from_dict(settings_cls, raw.get(section), section),
            latent=section_from_dict(LatentConfig, raw.get("latent"), "latent"),
            model=section_from_dict(ModelConfig, raw.get("model"), "model"),
            train=section_from_dict(TrainConfig, raw.get("train"), "train"),
            path=str(path),
            quick=quick,
        )

    @property
    def seeds(self) -> list[int]:
        """``settings.first_seed … + settings.n_seeds − 1``."""
        s: Any = self.settings
        return seeds_of(s.n_seeds, s.first_seed)

    def with_latent(self, **changes: Any) -> ExperimentConfig[S]:
        """A copy with ``[latent]`` keys replaced (re-validated)."""
        return dataclasses.replace(self, latent=_replace_latent(self.latent, changes))

    def with_model(self, **changes: Any) -> ExperimentConfig[S]:
        """A copy with ``[model]`` keys replaced (re-validated)."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, **changes))

    def with_train(self, **changes: Any) -> ExperimentConfig[S]:
        """A copy with ``[train]`` keys replaced (re-validated)."""
        return dataclasses.replace(self, train=dataclasses.replace(self.train, **changes))

    def latent_model(self, **changes: Any) -> LatentModel:
        """The :class:`~linrep.latent.LatentModel` of ``[latent]`` (with keys replaced)."""
        from ..latent import LatentModel

        return LatentModel(_replace_latent(self.latent, changes) if changes else self.latent)

    def to_json(self) -> dict[str, Any]:
        """Every section with defaults filled in (what the report shows as the resolved config)."""
        return {
            "experiment": dataclasses.asdict(self.settings),  # type: ignore[call-overload]
            "latent": dataclasses.asdict(self.latent),
            "model": dataclasses.asdict(self.model),
            "train": dataclasses.asdict(self.train),
        }


def _replace_latent(latent: LatentConfig, changes: Mapping[str, Any]) -> LatentConfig:
    """``dataclasses.replace`` for ``[latent]``; a new m keeps "max_known = m" (its default)."""
    changes = dict(changes)
    if "m" in changes and "max_known" not in changes and latent.max_known == latent.m:
        changes["max_known"] = None  # LatentConfig fills the default max_known = m in place
    return dataclasses.replace(latent, **changes)


def load_config(
    path: str | os.PathLike,
    settings_cls: type[S],
    *,
    quick: bool = False,
    overrides: Sequence[str] = (),
) -> ExperimentConfig[S]:
    """Read, merge ``--quick`` and ``--set``, and type an experiment config.

    Args:
        path: the TOML file.
        settings_cls: the experiment module's ``Settings`` dataclass.
        quick: apply the ``[quick.*]`` tables.
        overrides: ``section.key=value`` strings.

    Returns:
        :class:`ExperimentConfig`.
    """
    raw = load_raw_config(path, quick, overrides, settings_cls)
    return ExperimentConfig.from_raw(raw, settings_cls, str(path), quick)
