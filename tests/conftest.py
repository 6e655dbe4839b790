"""Shared fixtures: tiny runs of every experiment, made once per test session.

``TINY`` shrinks seeds and steps only where that keeps the results' keys: list-valued settings
that name headline keys (E2's coupling scales, E5's m, ...) keep their first and last values, so the
README claims that ``--quick`` covers can be checked against these runs (tests/test_claims.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

TINY = {
    "E1": [
        "experiment.n_seeds=2",
        "train.steps=200",
        "experiment.n_shuffles=5",
        "experiment.probes=true",
    ],
    "E2": ["experiment.n_seeds=2", "train.steps=200", "experiment.coupling_sds=[0.0, 2.0]"],
    "E3": [
        "experiment.n_seeds=2",
        "train.steps=200",
        "train.log_every=50",
        "experiment.sweep_seeds=2",
        "experiment.sweep_steps=2000",  # GD lr 1 and Adam lr 0.01 fit: the sweep headline exists
        "experiment.sweep_init_scales=[0.01, 0.1]",
    ],
    "E4": [
        "experiment.n_seeds=2",
        "train.steps=200",
        "experiment.encoder_train={transformer = {lr = 0.3, steps = 20, log_every = 10}}",
    ],
    "E5": ["experiment.n_seeds=2", "train.steps=100", "experiment.ms=[3]"],
    "E6": ["experiment.n_seeds=2", "train.steps=100"],
    "E7": ["experiment.n_seeds=2", "train.steps=100", "train.log_every=50"],
    "E8": ["experiment.n_seeds=2", "train.steps=100", "train.log_every=10"],
    "E9": [
        "experiment.n_seeds=2",
        "train.steps=100",
        "experiment.n_null=10",
        "experiment.n_boot=10",
    ],
    "E10": [
        "experiment.n_seeds=2",
        "experiment.frozen_steps=200",
        "experiment.joint_steps=200",
        "experiment.joint_points=2",
        "train.log_every=50",
    ],
}
"""Per experiment: ``--set`` overrides applied over its ``--quick`` config."""


class TinyRuns:
    """``runs(name)`` runs experiment ``name`` once (quick + TINY) into ``root/runs/<stem>``."""

    def __init__(self, root: Path):
        self.root = root
        self._done: dict[str, object] = {}

    def __call__(self, name: str):
        from linrep.experiments import experiment_module, run_experiment

        if name not in self._done:
            out = self.root / "runs" / experiment_module(name).STEM
            self._done[name] = run_experiment(
                name, out, quick=True, overrides=TINY[name], progress=False
            )
        return self._done[name]


@pytest.fixture(scope="session")
def tiny_runs(tmp_path_factory) -> TinyRuns:
    return TinyRuns(tmp_path_factory.mktemp("tiny_root"))
