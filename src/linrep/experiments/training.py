"""Training for the experiments: :func:`linrep.learn.fit` driven by a typed :class:`ExperimentConfig`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..learn import TrainResult
    from .config import ExperimentConfig

__all__ = ["train", "train_variants", "variant_label"]


def train(
    latent, cfg: ExperimentConfig, seeds: Sequence[int] | None = None, *, progress=True, **kw
) -> TrainResult:
    """:func:`linrep.learn.fit` of ``cfg.model`` / ``cfg.train`` on ``latent`` (default seeds: cfg's).

    ``**kw`` goes to ``fit`` (``metrics``, ``out_dir``, ...).
    """
    from ..learn import fit

    seeds = cfg.seeds if seeds is None else list(seeds)
    return fit(latent, cfg.model, cfg.train, seeds, progress=progress, **kw)


def variant_label(entry: Mapping[str, Any], label_key: str) -> str:
    """A variant's ``label``, else the value of its ``label_key`` (e.g. the optimiser's name)."""
    return str(entry.get("label", entry.get(label_key, "?")))


def train_variants(
    latent,
    cfg: ExperimentConfig,
    variants: Sequence[Mapping[str, Any]],
    seeds: Sequence[int] | None = None,
    *,
    label_key: str,
    progress: bool = True,
    **kw,
) -> Iterator[tuple[str, TrainResult]]:
    """Train one ensemble per variant of the ``[train]`` section.

    Args:
        latent: the latent model.
        cfg: the experiment config.
        variants: each a ``label`` plus ``[train]`` keys replacing the config's.
        seeds: the seeds of every ensemble (default: the config's).
        label_key: the ``[train]`` key that names a variant without a ``label`` (e.g. "optimizer").
        progress: progress bars.
        **kw: passed to :func:`linrep.learn.fit` (e.g. ``metrics``).

    Yields:
        ``(label, TrainResult)`` per variant, in order.
    """
    for entry in variants:
        changes = {k: v for k, v in entry.items() if k != "label"}
        yield (
            variant_label(entry, label_key),
            train(latent, cfg.with_train(**changes), seeds, progress=progress, **kw),
        )
