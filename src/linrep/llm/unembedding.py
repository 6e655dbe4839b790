"""Read a model's unembedding γ: (vocab, d) and its vocabulary, without loading the network.

For a GGUF file, ``gguf`` + numpy read the tensor ``output.weight`` (untied models) or
``token_embd.weight`` (tied models) and dequantize it to float32; token strings and types come from
the GGUF fields ``tokenizer.ggml.tokens`` / ``tokenizer.ggml.token_type``. For a Hugging Face folder,
``lm_head.weight`` (or the tied ``model.embed_tokens.weight``) is read from the safetensors files and
the vocabulary from ``tokenizer.json``.

The result is cached as float32 ``.npy`` per model checksum, so only the first run pays for parsing
and dequantizing (Gemma 3 270M: ≈15 s cold, <1 s warm).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .cache import cache_dir
from .registry import ModelSource
from .vocab import NORMAL, Vocabulary, detect_convention

__all__ = ["Unembedding", "load_unembedding", "read_gguf_unembedding", "read_hf_unembedding"]

_CACHE_VERSION = 2


@dataclass
class Unembedding:
    """γ and the vocabulary of one model.

    Attributes:
        gamma: ``(V, d)`` float32 unembedding rows γ(y) (Hugging Face orientation).
        tokens: ``(V,)`` token strings.
        token_type: ``(V,)`` int32 types; 1 = normal (the only rows used for covariances and nulls).
        tokenizer_model: GGUF ``tokenizer.ggml.model`` or the tokenizer.json model type.
        model: model name.
        sha256: checksum of the weights.
        n_layers: number of transformer blocks from the file's metadata (None if unknown); lets a
            bad ``--layer`` fail before the full model is loaded.
    """

    gamma: np.ndarray
    tokens: list[str]
    token_type: np.ndarray
    tokenizer_model: str
    model: str
    sha256: str
    n_layers: int | None = None
    _vocab: Vocabulary | None = field(default=None, repr=False)

    @property
    def normal(self) -> np.ndarray:
        """``(V,)`` bool mask of normal tokens (token_type == 1)."""
        return self.token_type == NORMAL

    @property
    def vocab(self) -> Vocabulary:
        """Word → single-token lookup (built on first use)."""
        if self._vocab is None:
            conv = detect_convention(self.tokens, self.tokenizer_model)
            self._vocab = Vocabulary(self.tokens, self.token_type, conv)
        return self._vocab

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.gamma.shape)  # type: ignore[return-value]


def _bad_gguf(path: Path, why: str) -> InputError:
    return InputError(
        f"'{path}' is not a readable GGUF model ({why}); the file is truncated or corrupted: "
        "re-download or re-install it"
    )


def read_gguf_unembedding(
    path: str | os.PathLike, progress: bool = True
) -> tuple[np.ndarray, list[str], np.ndarray, str, int | None]:
    """Read γ and the vocabulary from a GGUF file with ``gguf`` + numpy.

    Args:
        path: the ``.gguf`` file.
        progress: show a progress bar while dequantizing.

    Returns:
        ``(gamma (V, d) float32, tokens, token_type (V,) int32, tokenizer_model, n_layers)``.

    Raises:
        InputError: if the file is not a complete GGUF model with a vocabulary.
    """
    import gguf
    from tqdm.auto import tqdm

    path = Path(path)
    from .registry import gguf_header_problem

    problem = gguf_header_problem(path)
    if problem:
        raise _bad_gguf(path, problem)
    if progress:
        print(f"reading {path.name} (GGUF header and vocabulary) ...", flush=True)
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # gguf raises ValueError/IndexError/struct errors on damaged files
        raise _bad_gguf(
            path, f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"
        ) from None
    fields = reader.fields
    if "tokenizer.ggml.tokens" not in fields:
        raise _bad_gguf(path, "no tokenizer.ggml.tokens field")
    tok_field = fields["tokenizer.ggml.tokens"]
    try:
        tokens = [
            bytes(tok_field.parts[i]).decode("utf-8", errors="replace") for i in tok_field.data
        ]
    except Exception as e:
        raise _bad_gguf(path, f"unreadable token strings: {type(e).__name__}") from None
    if "tokenizer.ggml.token_type" in fields:
        tt = fields["tokenizer.ggml.token_type"]
        token_type = np.array([tt.parts[i][0] for i in tt.data], dtype=np.int32)
    else:
        token_type = np.full(len(tokens), NORMAL, dtype=np.int32)
    tok_model = ""
    if "tokenizer.ggml.model" in fields:
        try:
            tok_model = str(fields["tokenizer.ggml.model"].contents())
        except Exception:
            tok_model = ""
    n_layers = None
    try:
        arch = str(fields["general.architecture"].contents())
        n_layers = int(fields[f"{arch}.block_count"].contents())
    except Exception:  # optional metadata
        n_layers = None
    tensors = {t.name: t for t in reader.tensors}
    t = tensors.get("output.weight") or tensors.get("token_embd.weight")
    if t is None:
        raise _bad_gguf(path, "neither output.weight nor token_embd.weight is present")
    data = t.data
    n_rows = data.shape[0]
    if n_rows != len(tokens):
        raise _bad_gguf(path, f"{t.name} has {n_rows} rows but the vocabulary has {len(tokens)}")
    chunk = 16384
    blocks = []
    try:
        for start in tqdm(
            range(0, n_rows, chunk), desc=f"dequantize {t.name}", unit="chunk", disable=not progress
        ):
            blocks.append(
                np.asarray(gguf.quants.dequantize(data[start : start + chunk], t.tensor_type))
            )
    except Exception as e:
        raise _bad_gguf(path, f"cannot dequantize {t.name}: {type(e).__name__}") from None
    gamma = np.ascontiguousarray(np.concatenate(blocks, axis=0), dtype=np.float32)
    if gamma.ndim != 2 or not np.isfinite(gamma).all():
        raise _bad_gguf(path, f"{t.name} dequantizes to non-finite values or a bad shape")
    return gamma, tokens, token_type, tok_model, n_layers


def read_hf_unembedding(
    folder: str | os.PathLike,
) -> tuple[np.ndarray, list[str], np.ndarray, str, int | None]:
    """Read γ and the vocabulary from a Hugging Face model folder (safetensors + tokenizer.json).

    Rows of γ beyond the tokenizer's vocabulary (padding rows) get token type 0 and are never used.

    Args:
        folder: a folder with ``config.json``, ``*.safetensors`` and ``tokenizer.json``.

    Returns:
        ``(gamma (V, d) float32, tokens, token_type (V,) int32, tokenizer_model, n_layers)``.
    """
    from safetensors import safe_open

    folder = Path(folder)
    tj = folder / "tokenizer.json"
    if not tj.is_file():
        raise InputError(
            f"model folder '{folder}' has no tokenizer.json; save the tokenizer there too"
        )
    try:
        spec = json.loads(tj.read_text(encoding="utf-8"))
        model = spec["model"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError):
        raise InputError(f"'{tj}' is not a valid tokenizer.json; re-save the tokenizer") from None
    vocab = model.get("vocab", {})
    id_to_tok: dict[int, str] = {}
    if isinstance(vocab, dict):
        id_to_tok.update({int(i): t for t, i in vocab.items()})
    else:  # Unigram: list of [piece, score]
        id_to_tok.update({i: entry[0] for i, entry in enumerate(vocab)})
    special = set()
    for added in spec.get("added_tokens", []):
        id_to_tok[int(added["id"])] = added["content"]
        if added.get("special", False):
            special.add(int(added["id"]))
    names = ("lm_head.weight", "model.embed_tokens.weight", "embed_tokens.weight")
    gamma = None
    for st in sorted(folder.glob("*.safetensors")):
        with safe_open(str(st), framework="pt") as fh:
            keys = set(fh.keys())
            for name in names:
                if name in keys:
                    gamma = fh.get_tensor(name).float().numpy()
                    break
        if gamma is not None and "lm_head.weight" in keys:
            break
    if gamma is None:
        raise InputError(
            f"model folder '{folder}' has no lm_head.weight or embed_tokens.weight in its "
            "safetensors; pass a causal-LM folder"
        )
    n = gamma.shape[0]
    tokens = [id_to_tok.get(i, "") for i in range(n)]
    token_type = np.array(
        [0 if i not in id_to_tok else (3 if i in special else NORMAL) for i in range(n)],
        dtype=np.int32,
    )
    tok_model = {"BPE": "gpt2" if any(t.startswith("Ġ") for t in tokens[:5000]) else "bpe"}.get(
        model.get("type", ""), str(model.get("type", "")).lower()
    )
    n_layers = None
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        n_layers = cfg.get("num_hidden_layers") or cfg.get("text_config", {}).get(
            "num_hidden_layers"
        )
        n_layers = int(n_layers) if n_layers is not None else None
    except (OSError, ValueError, AttributeError):
        n_layers = None
    return np.ascontiguousarray(gamma, dtype=np.float32), tokens, token_type, tok_model, n_layers


def load_unembedding(
    source: ModelSource,
    cache: str | os.PathLike | None = None,
    *,
    use_cache: bool = True,
    progress: bool = True,
) -> Unembedding:
    """γ and vocabulary of a model, from the float32 cache when present (keyed by checksum).

    Args:
        source: the model (see :func:`linrep.llm.resolve_model`).
        cache: cache folder; ``None`` = ``$LINREP_CACHE`` or the user cache folder.
        use_cache: read and write the cache (``False`` always re-reads the model file).
        progress: progress bars and messages.

    Returns:
        The :class:`Unembedding`.
    """
    entry = cache_dir(cache) / "unembedding" / source.sha256 if use_cache else None
    if entry is not None and (entry / "meta.json").is_file():
        try:
            meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
            if meta.get("version") == _CACHE_VERSION:
                gamma = np.load(entry / "gamma.npy")
                token_type = np.load(entry / "token_type.npy")
                tokens = json.loads((entry / "tokens.json").read_text(encoding="utf-8"))
                if gamma.shape[0] == len(tokens) == token_type.shape[0]:
                    return Unembedding(
                        gamma,
                        tokens,
                        token_type,
                        meta["tokenizer_model"],
                        source.name,
                        source.sha256,
                        meta.get("n_layers"),
                    )
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            pass  # damaged entry: rebuild below
    if source.kind == "gguf":
        gamma, tokens, token_type, tok_model, n_layers = read_gguf_unembedding(
            source.path, progress
        )
    else:
        gamma, tokens, token_type, tok_model, n_layers = read_hf_unembedding(source.path)
    if entry is not None:
        _write_entry(entry, gamma, tokens, token_type, tok_model, n_layers, source)
    return Unembedding(gamma, tokens, token_type, tok_model, source.name, source.sha256, n_layers)


def _write_entry(
    entry: Path, gamma, tokens, token_type, tok_model, n_layers, source: ModelSource
) -> None:
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        np.save(tmp / "gamma.npy", gamma)
        np.save(tmp / "token_type.npy", token_type)
        (tmp / "tokens.json").write_text(json.dumps(tokens, ensure_ascii=False), encoding="utf-8")
        meta = {
            "version": _CACHE_VERSION,
            "model": source.name,
            "sha256": source.sha256,
            "shape": list(gamma.shape),
            "tokenizer_model": tok_model,
            "n_layers": n_layers,
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    except OSError:  # a read-only cache only costs speed
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
