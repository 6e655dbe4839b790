"""linrep: why do language models represent concepts linearly, and how linear are they?

An executable companion to Jiang, Rajendran, Ravikumar, Aragam & Veitch, "On the Origins of Linear
Representations in Large Language Models" (ICML 2024) and Park, Choe & Veitch, "The Linear
Representation Hypothesis and the Geometry of Large Language Models" (2023).

Importing linrep does no work: no model loads, no device selection, no plotting setup. The public API
is re-exported lazily from the rooms of the package (see ARCHITECTURE.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports

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


if TYPE_CHECKING:  # what type checkers and IDEs see; at run time names load lazily
    from .errors import ConfigError as ConfigError
    from .errors import LinrepError as LinrepError
    from .experiments import reproduce as reproduce
    from .experiments import run_experiment as run_experiment
    from .experiments.simulate import simulate as simulate
    from .geometry import CausalInnerProduct as CausalInnerProduct
    from .geometry import EuclideanInnerProduct as EuclideanInnerProduct
    from .geometry import RandomInnerProduct as RandomInnerProduct
    from .geometry import metric_hook as metric_hook
    from .geometry import simulation_metrics as simulation_metrics
    from .geometry import steering_vectors as steering_vectors
    from .latent import LatentConfig as LatentConfig
    from .latent import LatentModel as LatentModel
    from .learn import ModelConfig as ModelConfig
    from .learn import TrainConfig as TrainConfig
    from .learn import TrainResult as TrainResult
    from .llm import LLMConfig as LLMConfig
    from .llm import load_unembedding as load_unembedding
    from .llm import resolve_model as resolve_model
    from .llm import run_llm as run_llm
    from .report import Report as Report
    from .sweep import run_sweep as run_sweep
    from .theory import log_odds_construction as log_odds_construction
    from .theory import max_margin_direction as max_margin_direction

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
