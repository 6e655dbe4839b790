"""``linrep train``: read a config, apply ``--set`` overrides, train the seeds, write the results.

The command's Python twin is :func:`train_from_config`; everything it writes goes to ``out_dir``:
``config.json`` (the resolved per-run configs and the latent section), ``history.csv``,
``params.safetensors`` (final and initial parameters, run axis first), ``embeddings.npz``
(f, g, f0, g0), ``metrics.json`` (last history row and status per run, loss floor, timing,
versions, and ``geometry``: same-concept and cross-concept cosines, alignment and their
identifiable twins with seed intervals, :mod:`linrep.geometry.scale`) and ``checkpoint.pt``
(for ``--resume``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import apply_overrides, check_sections, load_toml, section_from_dict
from ..limits import parse_seeds
from .config import ModelConfig, TrainConfig, config_keys

__all__ = ["train_from_config", "parse_seeds"]

SECTIONS = ("latent", "model", "train")

SMALL_GEOMETRY = 1 << 22
"""Unembedding entries K·V·d up to which the final geometry runs on one thread
(:func:`~linrep.learn.parallel.one_thread`)."""


def resolve_config(config: str | Path, overrides: list[str] = ()) -> dict:
    """The TOML config with ``--set`` overrides applied and sections checked."""
    from ..latent import LatentConfig

    raw = load_toml(config)
    check_sections(
        raw, SECTIONS, where=f"'{config}' (linrep train reads [latent], [model], [train])"
    )
    known = {"latent": [f.name for f in dataclasses.fields(LatentConfig)], **config_keys()}
    return apply_overrides(raw, overrides, known)


def train_from_config(
    config: str | Path,
    out_dir: str | Path,
    overrides: list[str] = (),
    seeds: str | list[int] | None = None,
    *,
    resume: bool = False,
    progress: bool = True,
):
    """Train the model of a config file (``[latent]``, ``[model]``, ``[train]``) and save everything.

    Args:
        config: TOML file.  out_dir: output folder.  overrides: ``section.key=value`` strings.
        seeds: ``"0-9"``-style spec or list of seeds (default: ``train.seed``).
        resume: continue from ``out_dir/checkpoint.pt``.  progress: tqdm bar.

    Returns:
        The :class:`~linrep.learn.TrainResult`.
    """
    from ..latent import LatentModel
    from .trainer import fit

    raw = resolve_config(config, list(overrides))
    latent = LatentModel.from_config(raw.get("latent", {}))
    model_cfg = section_from_dict(ModelConfig, raw.get("model"), "model")
    train_cfg = section_from_dict(TrainConfig, raw.get("train"), "train")
    if isinstance(seeds, str):
        seeds = parse_seeds(seeds)
    result = fit(
        latent,
        model_cfg,
        train_cfg,
        seeds=seeds,
        out_dir=Path(out_dir),
        resume=resume,
        progress=progress,
    )
    result.write_metrics(out_dir, extra={"geometry": final_geometry(latent, result)})
    return result


def final_geometry(latent, result) -> dict:
    """Concept geometry of the trained runs for metrics.json (:mod:`linrep.geometry.scale`): per
    run, and mean ± standard error over the runs (t-intervals: ``linrep simulate`` / reports)."""
    import contextlib

    from ..geometry.scale import scale_geometry
    from .parallel import one_thread

    f, g = result.embeddings(), result.unembeddings()
    # tiny kernels on a small ensemble: threads would only wait for each other
    small = g.size <= SMALL_GEOMETRY  # K·V·d entries
    with one_thread() if small else contextlib.nullcontext():
        return scale_geometry(latent, f, g, embed=result.embed_contexts).to_json(intervals=False)
