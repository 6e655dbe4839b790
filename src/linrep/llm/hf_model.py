"""Load a full causal LM offline (transformers) and read last-token hidden states λ(x) = f(x).

GGUF models are dequantized to float32 by transformers (``gguf_file=``); that takes tens of seconds
for Gemma 3 270M, so the float32 model and tokenizer are re-saved once (``save_pretrained``) in the
cache under the model's checksum and reloaded from there in a few seconds. ``HF_HUB_OFFLINE=1`` is
always set: nothing is ever downloaded.

Hidden states: ``output_hidden_states=True`` returns n_layers + 1 residual-stream states; index 0 is
the input embedding and index n_layers (the default) is the final, post-norm state whose dot
products with the unembedding rows γ(y) are the logits.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .cache import cache_dir
from .registry import ModelSource

__all__ = ["load_causal_lm", "n_layers", "resolve_layer", "last_token_states"]

_MARKER = "linrep_complete.json"


def _offline() -> None:
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
    kw: dict[str, Any] = {} if gguf_file is None else {"gguf_file": gguf_file}
    tok = AutoTokenizer.from_pretrained(str(folder), **kw)
    extra: dict[str, Any] = {"device_map": "auto"} if torch.cuda.is_available() else {}
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kw, **extra)
    model.eval()
    return model, tok


def load_causal_lm(
    source: ModelSource,
    cache: str | os.PathLike | None = None,
    *,
    use_cache: bool = True,
    progress: bool = True,
) -> tuple[Any, Any]:
    """Load model and tokenizer in float32, offline.

    Args:
        source: the model (see :func:`linrep.llm.resolve_model`).
        cache: cache folder; a GGUF model's float32 copy is kept in ``hf/<sha256>/``.
        use_cache: read/write that copy.
        progress: print what is being loaded.

    Returns:
        ``(model, tokenizer)`` (a transformers causal LM in eval mode and its tokenizer).

    Raises:
        InputError: if transformers cannot load it (the message names the model and the reason).
    """
    _offline()
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise InputError(
            "hidden-state analyses need transformers; install them with: pip install 'linrep[llm]'"
        ) from None
    entry = cache_dir(cache) / "hf" / source.sha256 if use_cache and source.kind == "gguf" else None
    try:
        if entry is not None and (entry / _MARKER).is_file():
            if progress:
                print(f"loading {source.name} (cached float32 copy) ...", flush=True)
            return _from_pretrained(entry, None, progress)
        if progress:
            print(f"loading {source.name} with transformers (first time: slow) ...", flush=True)
        if source.kind == "hf":
            return _from_pretrained(source.path, None, progress)
        model, tok = _from_pretrained(source.path.parent, source.path.name, progress)
    except InputError:
        raise
    except Exception as e:  # transformers raises many types for unreadable/unsupported models
        msg = str(e).splitlines()[0][:120] if str(e) else ""
        raise InputError(
            f"cannot load '{source.path}' as a causal LM ({type(e).__name__}: {msg}); pass a "
            "supported GGUF file or Hugging Face model folder"
        ) from None
    if entry is not None and _detach_gguf_quantizer(model):
        tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            model.save_pretrained(str(tmp))
            tok.save_pretrained(str(tmp))
            (tmp / _MARKER).write_text(
                json.dumps({"model": source.name, "sha256": source.sha256}), encoding="utf-8"
            )
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(tmp, entry)
        except OSError:  # a read-only or full cache only costs speed
            pass
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return model, tok


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


def n_layers(model: Any) -> int:
    """Number of transformer blocks (hidden states are indexed 0 … n_layers)."""
    cfg = model.config
    n = getattr(cfg, "num_hidden_layers", None)
    if n is None and hasattr(cfg, "get_text_config"):
        n = getattr(cfg.get_text_config(), "num_hidden_layers", None)
    if n is None:
        raise InputError("cannot tell the model's number of layers from its config")
    return int(n)


def resolve_layer(layer: int | None, n: int) -> int:
    """Map ``layer`` (None = final post-norm state n; negative counts from the end) into 0 … n.

    Raises:
        InputError: if it is out of range.
    """
    if layer is None:
        return n
    if not -(n + 1) <= layer <= n:
        raise InputError(
            f"--layer {layer} is out of range for a model with {n} layers; use 0..{n} "
            f"(or -1..-{n + 1}; {n} = final post-norm state, the default)"
        )
    return layer % (n + 1)


def last_token_states(
    model: Any,
    tokenizer: Any,
    texts: list[str],
    layer: int | None | Sequence[int | None] = None,
    *,
    batch_size: int = 16,
    progress: bool = True,
    desc: str = "forward",
) -> np.ndarray:
    """Hidden state at the last token of each text, at one layer.

    Texts are tokenized with the tokenizer's default special tokens (Gemma prepends ``<bos>``),
    right-padded, and the state at each text's own last token is gathered (so positions are those of
    the unpadded text).

    Args:
        model: causal LM from :func:`load_causal_lm`.
        tokenizer: its tokenizer.
        texts: n context strings.
        layer: hidden-state index (None = final post-norm, see :func:`resolve_layer`).
        batch_size: texts per forward pass.
        progress: show a progress bar.
        desc: progress-bar label.

    Returns:
        ``f: (n, d)`` float64 hidden states; for a list of layers, a list of such arrays (one
        forward pass serves them all).
    """
    import torch
    from tqdm.auto import tqdm

    many = isinstance(layer, (list, tuple))
    n = n_layers(model)
    idxs = [resolve_layer(x, n) for x in (layer if many else [layer])]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    device = next(model.parameters()).device
    out: list[list[np.ndarray]] = [[] for _ in idxs]
    # batch texts of similar length together (less padding), then restore the input order
    lengths = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    order = np.argsort(lengths, kind="stable")
    sorted_texts = [texts[i] for i in order]
    batches = range(0, len(texts), batch_size)
    with torch.inference_mode():
        for s in tqdm(batches, desc=desc, unit="batch", disable=not progress):
            enc = tokenizer(sorted_texts[s : s + batch_size], return_tensors="pt", padding=True)
            enc = {k: v.to(device) for k, v in enc.items()}
            try:  # logits of the last position only: γ·f for every position is wasted work
                res = model(**enc, output_hidden_states=True, use_cache=False, logits_to_keep=1)
            except TypeError:  # models without logits_to_keep
                res = model(**enc, output_hidden_states=True, use_cache=False)
            last = enc["attention_mask"].sum(dim=1) - 1
            rows = torch.arange(last.shape[0], device=device)
            for o, i in zip(out, idxs, strict=True):
                o.append(res.hidden_states[i][rows, last].double().cpu().numpy())
    d = model.get_input_embeddings().weight.shape[1]
    inverse = np.empty_like(order)
    inverse[order] = np.arange(order.size)
    arrays = [np.concatenate(o, axis=0)[inverse] if o else np.zeros((0, d)) for o in out]
    return arrays if many else arrays[0]
