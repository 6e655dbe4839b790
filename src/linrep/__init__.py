"""linrep: why do language models represent concepts linearly, and how linear are they?

An executable companion to Jiang, Rajendran, Ravikumar, Aragam & Veitch, "On the Origins of Linear
Representations in Large Language Models" (ICML 2024) and Park, Choe & Veitch, "The Linear
Representation Hypothesis and the Geometry of Large Language Models" (2023).

Importing linrep does no work: no model loads, no device selection, no plotting setup. The public API
is re-exported lazily from the rooms of the package (see ARCHITECTURE.md).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it (imported on first attribute access)
_EXPORTS: dict[str, str] = {
    "LinrepError": "linrep.errors",
    "ConfigError": "linrep.errors",
    "LatentConfig": "linrep.latent",
    "LatentModel": "linrep.latent",
    "ModelConfig": "linrep.learn",
    "TrainConfig": "linrep.learn",
    "TrainResult": "linrep.learn",
    "CausalInnerProduct": "linrep.geometry",
    "EuclideanInnerProduct": "linrep.geometry",
    "RandomInnerProduct": "linrep.geometry",
    "steering_vectors": "linrep.geometry",
    "simulation_metrics": "linrep.geometry",
    "metric_hook": "linrep.geometry",
    "log_odds_construction": "linrep.theory",
    "max_margin_direction": "linrep.theory",
    "run_sweep": "linrep.sweep",
    "Report": "linrep.report",
    "run_experiment": "linrep.experiments",
    "reproduce": "linrep.experiments",
    "simulate": "linrep.experiments.simulate",
    "LLMConfig": "linrep.llm",
    "run_llm": "linrep.llm",
    "resolve_model": "linrep.llm",
    "load_unembedding": "linrep.llm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'linrep' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
