"""Load a full causal LM offline with transformers (what ``linrep llm --model NAME|PATH`` needs).

GGUF models are dequantized to float32 by transformers (``gguf_file=``); that takes tens of seconds
for Gemma 3 270M, so the float32 model and tokenizer are re-saved once (``save_pretrained``, as
safetensors) in the checked cache entry ``hf-float32/<sha256>/`` and reloaded from there in a few seconds.
Weights are only ever read from safetensors (``use_safetensors=True``: a folder holding pickled
``pytorch_model.bin`` weights is refused by :func:`linrep.llm.resolve_model`). ``HF_HUB_OFFLINE=1``
is always set: nothing is ever downloaded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import InputError
from .cache import ModelCache
from .registry import ModelSource

__all__ = ["load_causal_lm", "offline"]


def offline() -> None:
    """Forbid every hub access of transformers / huggingface_hub in this process."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _from_pretrained(folder: Path, gguf_file: str | None, progress: bool = True) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    if progress:
        hf_logging.enable_progress_bar()
    else:
        hf_logging.disable_progress_bar()
    kw: dict[str, Any] = (
        {"use_safetensors": True} if gguf_file is None else {"gguf_file": gguf_file}
    )
    tok = AutoTokenizer.from_pretrained(str(folder), **({} if gguf_file is None else kw))
    extra: dict[str, Any] = {"device_map": "auto"} if torch.cuda.is_available() else {}
    with _gguf_conversion_bar(progress):
        model = AutoModelForCausalLM.from_pretrained(
            str(folder), dtype=torch.float32, **kw, **extra
        )
    model.eval()
    return model, tok


@contextmanager
def _gguf_conversion_bar(progress: bool) -> Iterator[None]:
    """transformers' GGUF de-quantization bar is a plain tqdm its logging switch does not reach:
    disable it for the duration of the load when no progress is wanted (``--quiet``)."""
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # another transformers layout: nothing to silence
        gguf_utils = None
    bar = getattr(gguf_utils, "tqdm", None)
    if progress or bar is None:
        yield
        return
    gguf_utils.tqdm = partial(bar, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = bar


def _detach_gguf_quantizer(model: Any) -> bool:
    """Mark a fully dequantized GGUF model as a plain float32 model so ``save_pretrained`` works.

    transformers refuses to serialize anything loaded through its GGUF quantizer, even when every
    weight was dequantized into ordinary ``nn.Linear``/``nn.Embedding`` modules (the case without the
    optional ``kernels`` package). Returns False (no cache) if any GGUF-specific module remains.
    """
    if any("gguf" in type(mod).__name__.lower() for mod in model.modules()):
        return False
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return True


def _load(source: ModelSource, cache: ModelCache, progress: bool) -> tuple[Any, Any]:
    entry = (
        cache.load("hf-float32", source.sha256, source.sha256) if source.kind == "gguf" else None
    )
    if entry is not None:
        if progress:
            print(f"loading {source.name} (cached float32 copy) ...", flush=True)
        return _from_pretrained(entry, None, progress)
    if progress:
        print(f"loading {source.name} with transformers (first time: slow) ...", flush=True)
    if source.kind == "hf":
        return _from_pretrained(source.path, None, progress)
    model, tok = _from_pretrained(source.path.parent, source.path.name, progress)
    if _detach_gguf_quantizer(model):

        def fill(tmp: Path) -> None:  # a temporary folder, published by ModelCache.store
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))

        cache.store("hf-float32", source.sha256, source.sha256, fill)
    return model, tok


def load_causal_lm(
    source: ModelSource,
    cache: ModelCache | str | os.PathLike | bool | None = None,
    *,
    progress: bool = True,
) -> tuple[Any, Any]:
    """Load model and tokenizer in float32, offline.

    Args:
        source: the model (see :func:`linrep.llm.resolve_model`).
        cache: the model cache (or a folder; None = the user cache; False = none); a GGUF model's
            float32 copy is kept in ``hf-float32/<sha256>/``.
        progress: print what is being loaded.

    Returns:
        ``(model, tokenizer)`` (a transformers causal LM in eval mode and its tokenizer).

    Raises:
        InputError: if transformers cannot load it (the message names the model and the reason).
    """
    offline()
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise InputError(
            "hidden-state analyses need transformers; install them with: pip install 'linrep[llm]'"
        ) from None
    cache = ModelCache.of(cache)
    try:
        return _load(source, cache, progress)
    except InputError:
        raise
    except Exception as e:  # transformers raises many types for unreadable/unsupported models
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        raise InputError(
            f"cannot load '{source.path}' as a causal LM ({type(e).__name__}: {msg}); pass a "
            "supported GGUF file or Hugging Face model folder"
        ) from None
