"""The result of training an ensemble: parameters, history, configs, and how to save them."""

from __future__ import annotations

import csv
import dataclasses
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..io import atomic_write_bytes, atomic_write_text, ensure_out_dir, run_metadata, write_json
from .config import ModelConfig, TrainConfig
from .model import BatchedModel

__all__ = ["TrainResult", "history_table", "write_history"]


def history_table(history: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """(column names, rows) of history rows, columns in first-seen order."""
    cols: list[str] = []
    for row in history:
        cols += [k for k in row if k not in cols]
    return cols, [[row.get(c, "") for c in cols] for row in history]


def write_history(path: str | Path, history: Sequence[Mapping[str, Any]]) -> None:
    """Write history rows as CSV, atomically (the one writer of ``history.csv``)."""
    cols, rows = history_table(history)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    w.writerows(rows)
    atomic_write_text(Path(path), buf.getvalue())


@dataclass(frozen=True, kw_only=True)
class TrainResult:
    """A trained ensemble of K runs.

    History rows hold ``run, seed, step, loss, excess_loss, [excess_loss_se,] param_norm, lr`` and
    the metric hooks' values (see :mod:`linrep.learn.trainer`).
    """

    model: BatchedModel
    """The batched model (shapes, encoder); evaluate it with ``theta`` / ``theta0``."""
    theta: torch.Tensor
    """(K, P) trained parameters (a failed run keeps its last finite state)."""
    theta0: torch.Tensor
    """(K, P) initial parameters."""
    history: list[dict[str, Any]]
    """History rows, in order."""
    model_configs: list[ModelConfig]
    """Per-run model configs."""
    train_configs: list[TrainConfig]
    """Per-run train configs (``seed`` set)."""
    loss_floor: float
    """Population minimum of the loss (H(Y|X) for cross-entropy; over the held-out contexts when
    the excess loss is estimated)."""
    excess_loss_method: str
    """How ``excess_loss`` was computed: exact, or estimated on held-out contexts (± SE)."""
    seconds: float
    """Wall-clock training time of this call."""
    latent_config: dict[str, Any] | None = None
    """The latent model's config (plain data), when it has one."""
    failed: dict[int, str] = field(default_factory=dict)
    """Runs whose loss became non-finite → the reason; they stopped at their last finite state
    while the others went on."""

    @property
    def K(self) -> int:
        """Number of runs."""
        return self.theta.shape[0]

    @property
    def seeds(self) -> list[int]:
        """(K,) run seeds."""
        return [c.seed for c in self.train_configs]

    @property
    def configs(self) -> list[dict[str, Any]]:
        """Per-run ``{"model": {...}, "train": {...}}`` as plain data."""
        return [
            {"model": dataclasses.asdict(m), "train": dataclasses.asdict(t)}
            for m, t in zip(self.model_configs, self.train_configs, strict=True)
        ]

    @cached_property
    def final(self) -> list[dict[str, Any]]:
        """Per run, its last history row."""
        last: dict[int, dict[str, Any]] = {}
        for row in self.history:
            last[row["run"]] = row
        return [last[k] for k in sorted(last)]

    @property
    def status(self) -> list[str]:
        """Per run ``"ok"`` or ``"failed: <reason>"``."""
        return [f"failed: {self.failed[k]}" if k in self.failed else "ok" for k in range(self.K)]

    # ------------------------------------------------------------------ embeddings
    def _embed(self, theta: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        f, g = self.model.embed(theta)
        return f.double().cpu().numpy().copy(), g.double().cpu().numpy().copy()

    def embeddings(self) -> np.ndarray:
        """f(ξ) of the trained runs for every context of ``latent.contexts``: (K, n, d) float64."""
        return self._embed(self.theta)[0]

    def unembeddings(self) -> np.ndarray:
        """g(y) of the trained runs: (K, V, d) float64."""
        return self._embed(self.theta)[1]

    def initial_embeddings(self) -> np.ndarray:
        """f(ξ) of the untrained (initial) runs: (K, n, d) float64."""
        return self._embed(self.theta0)[0]

    def initial_unembeddings(self) -> np.ndarray:
        """g(y) of the untrained runs: (K, V, d) float64."""
        return self._embed(self.theta0)[1]

    def embed_contexts(self, contexts: np.ndarray, *, initial: bool = False) -> np.ndarray:
        """f of any contexts (N, m) int8 (−1 = ⋄) under every run: (K, N, d) float64."""
        th = self.theta0 if initial else self.theta
        return self.model.embed_contexts(th, contexts).double().cpu().numpy()

    def params(self, *, initial: bool = False) -> dict[str, np.ndarray]:
        """Named parameters (K, *shape) as float64 numpy arrays (encoder tensors, ``g``, ``b``)."""
        th = self.theta0 if initial else self.theta
        return {k: v.double().cpu().numpy().copy() for k, v in self.model.views(th).items()}

    def history_table(self) -> tuple[list[str], list[list[Any]]]:
        """(column names, rows) of the history, columns in first-seen order."""
        return history_table(self.history)

    # ------------------------------------------------------------------ output
    def save(self, out_dir: str | Path, *, extra: Mapping[str, Any] | None = None) -> None:
        """Write config.json, history.csv, params.safetensors, embeddings.npz and metrics.json.

        ``extra``: more top-level entries of metrics.json (e.g. ``{"geometry": {...}}``).
        """
        from safetensors.torch import save as st_save

        from ..io import save_npz

        out = ensure_out_dir(out_dir)
        write_json(
            out / "config.json",
            {"latent": self.latent_config, "runs": self.configs, "seeds": self.seeds},
        )
        write_history(out / "history.csv", self.history)
        tensors = {}
        for tag, th in (("final", self.theta), ("initial", self.theta0)):
            for k, v in self.model.views(th).items():
                tensors[f"{tag}.{k}"] = v.detach().cpu().contiguous().clone()
        atomic_write_bytes(
            out / "params.safetensors",
            st_save(tensors, metadata={"seeds": ",".join(map(str, self.seeds))}),
        )
        f, g = self._embed(self.theta)
        f0, g0 = self._embed(self.theta0)
        save_npz(out / "embeddings.npz", f=f, g=g, f0=f0, g0=g0, seeds=np.array(self.seeds))
        self.write_metrics(out, extra=extra)

    def write_metrics(self, out_dir: str | Path, *, extra: Mapping[str, Any] | None = None) -> None:
        """Write ``metrics.json``: last history row, status of every run, loss floor, how the
        excess loss was computed, timing, ``extra`` entries and the run's metadata."""
        write_json(
            Path(out_dir) / "metrics.json",
            {
                "final": self.final,
                "status": self.status,
                "loss_floor": self.loss_floor,
                "excess_loss_method": self.excess_loss_method,
                "train_seconds": self.seconds,
                **dict(extra or {}),
                "metadata": run_metadata(),
            },
        )
