"""The latent conditional model (``docs/latent-model.md`` §1): concepts, contexts, tokens, exact tables."""

from .config import LatentConfig
from .contexts import UNKNOWN, all_contexts
from .distributions import concept_vectors
from .model import ConceptRegime, LatentModel

__all__ = [
    "LatentConfig",
    "LatentModel",
    "ConceptRegime",
    "UNKNOWN",
    "all_contexts",
    "concept_vectors",
]
