"""Read a model's unembedding γ: (vocab, d) and its vocabulary, without loading the network.

For a GGUF file, ``gguf`` + numpy read the tensor ``output.weight`` (untied models) or
``token_embd.weight`` (tied models) and dequantize it to float32; token strings and types come from
the GGUF fields ``tokenizer.ggml.tokens`` / ``tokenizer.ggml.token_type``, and what the file says about
itself (``general.name``, the quantisation from ``general.file_type``) is kept as a
:class:`FileLabel`. For a Hugging Face folder, ``lm_head.weight`` (or the tied
``model.embed_tokens.weight``) is read from the safetensors files and the vocabulary from
``tokenizer.json``. A model already in memory gives its γ through :mod:`linrep.llm.model`.

The result is cached as float32 ``.npy`` per model checksum (a checksummed
:class:`~linrep.llm.cache.ModelCache` entry), so only the first run pays for parsing and
dequantizing (Gemma 3 270M: ≈15 s cold, <1 s warm).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .cache import ModelCache
from .registry import ModelSource
from .vocab import NORMAL, Vocabulary, detect_convention

__all__ = [
    "FileLabel",
    "Unembedding",
    "load_unembedding",
    "read_gguf_unembedding",
    "read_hf_unembedding",
    "quantization_name",
]

_CACHE_VERSION = 3


@dataclass(frozen=True)
class FileLabel:
    """What a model file says about itself (empty strings when it does not say).

    Attributes:
        name: ``general.name`` (GGUF) or the config's ``_name_or_path``.
        architecture: ``general.architecture`` or the config's ``model_type``.
        quantization: the file's quantisation (``general.file_type``: ``"Q4_K_M"``, ``"Q4_1"`` …) or
            the dtype of an unquantised model (``"float32"``).
        unembedding_storage: storage type of the γ tensor itself (e.g. ``"Q8_0"``).
    """

    name: str = ""
    architecture: str = ""
    quantization: str = ""
    unembedding_storage: str = ""


@dataclass
class Unembedding:
    """γ and the vocabulary of one model.

    Attributes:
        gamma: ``(V, d)`` float32 unembedding rows γ(y) (Hugging Face orientation).
        tokens: ``(V,)`` token strings.
        token_type: ``(V,)`` int32 types; 1 = normal (the only rows used for covariances and nulls).
        tokenizer_model: GGUF ``tokenizer.ggml.model`` or the tokenizer.json model type.
        model: model name.
        sha256: checksum identifying the weights (of the file, or of γ for an in-memory model).
        n_layers: number of transformer blocks from the file's metadata (None if unknown); lets a
            bad ``--layer`` fail before the full model is loaded.
        label: what the file says about itself.
    """

    gamma: np.ndarray
    tokens: list[str]
    token_type: np.ndarray
    tokenizer_model: str
    model: str
    sha256: str
    n_layers: int | None = None
    label: FileLabel = field(default_factory=FileLabel)
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


@dataclass(frozen=True)
class _Read:
    gamma: np.ndarray
    tokens: list[str]
    token_type: np.ndarray
    tokenizer_model: str
    n_layers: int | None
    label: FileLabel


def _bad_gguf(path: Path, why: str) -> InputError:
    return InputError(
        f"'{path}' is not a readable GGUF model ({why}); the file is truncated or corrupted: "
        "re-download or re-install it"
    )


def quantization_name(file_type: int) -> str:
    """``general.file_type`` → ``"Q4_K_M"`` (gguf's ``LlamaFileType`` without ``MOSTLY_``)."""
    import gguf

    try:
        name = gguf.LlamaFileType(int(file_type)).name
    except ValueError:
        return f"file_type {file_type}"
    return {"ALL_F32": "F32"}.get(name, name.removeprefix("MOSTLY_"))


def _field(fields, key: str, default=None):
    try:
        return fields[key].contents()
    except Exception:  # optional metadata, absent or unreadable
        return default


def _gguf_label(fields, gamma_tensor) -> tuple[FileLabel, int | None]:
    arch = str(_field(fields, "general.architecture", ""))
    n_layers = _field(fields, f"{arch}.block_count")
    file_type = _field(fields, "general.file_type")
    label = FileLabel(
        name=str(_field(fields, "general.name", "")),
        architecture=arch,
        quantization=quantization_name(file_type) if file_type is not None else "",
        unembedding_storage=gamma_tensor.tensor_type.name,
    )
    return label, int(n_layers) if n_layers is not None else None


def _gguf_vocab(path: Path, fields) -> tuple[list[str], np.ndarray, str]:
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
    return tokens, token_type, str(_field(fields, "tokenizer.ggml.model", ""))


def _dequantize(path: Path, t, progress: bool) -> np.ndarray:
    import gguf

    from ..progress import progress_bar

    data, chunk, blocks = t.data, 16384, []
    try:
        for start in progress_bar(
            range(0, data.shape[0], chunk),
            desc=f"dequantize {t.name}",
            unit="chunk",
            enabled=progress,
        ):
            blocks.append(
                np.asarray(gguf.quants.dequantize(data[start : start + chunk], t.tensor_type))
            )
    except Exception as e:
        raise _bad_gguf(path, f"cannot dequantize {t.name}: {type(e).__name__}") from None
    gamma = np.ascontiguousarray(np.concatenate(blocks, axis=0), dtype=np.float32)
    if gamma.ndim != 2 or not np.isfinite(gamma).all():
        raise _bad_gguf(path, f"{t.name} dequantizes to non-finite values or a bad shape")
    return gamma


def read_gguf_unembedding(path: str | os.PathLike, progress: bool = True) -> _Read:
    """Read γ, the vocabulary and the file's label from a GGUF file with ``gguf`` + numpy.

    Raises:
        InputError: if the file is not a complete GGUF model with a vocabulary.
    """
    import gguf

    from .registry import gguf_header_problem

    path = Path(path)
    problem = gguf_header_problem(path)
    if problem:
        raise _bad_gguf(path, problem)
    if progress:
        print(f"reading {path.name} (GGUF header and vocabulary) ...", flush=True)
    try:
        reader = gguf.GGUFReader(path)
    except Exception as e:  # gguf raises ValueError/IndexError/struct errors on damaged files
        first = str(e).splitlines()[0][:80] if str(e) else ""
        raise _bad_gguf(path, f"{type(e).__name__}: {first}") from None
    tokens, token_type, tok_model = _gguf_vocab(path, reader.fields)
    tensors = {t.name: t for t in reader.tensors}
    t = tensors.get("output.weight") or tensors.get("token_embd.weight")
    if t is None:
        raise _bad_gguf(path, "neither output.weight nor token_embd.weight is present")
    if t.data.shape[0] != len(tokens):
        raise _bad_gguf(
            path, f"{t.name} has {t.data.shape[0]} rows but the vocabulary has {len(tokens)}"
        )
    label, n_layers = _gguf_label(reader.fields, t)
    return _Read(_dequantize(path, t, progress), tokens, token_type, tok_model, n_layers, label)


def _hf_vocab(folder: Path) -> tuple[dict[int, str], set[int], str]:
    """id → token string, the special ids and the tokenizer model type of ``tokenizer.json``."""
    tj = folder / "tokenizer.json"
    if not tj.is_file():
        raise InputError(
            f"model folder '{folder}' has no tokenizer.json; save the tokenizer there too"
        )
    try:
        spec = json.loads(tj.read_text(encoding="utf-8"))
        model = spec["model"]
    except (json.JSONDecodeError, KeyError, UnicodeDecodeError, TypeError):
        raise InputError(f"'{tj}' is not a valid tokenizer.json; re-save the tokenizer") from None
    vocab = model.get("vocab", {})
    if isinstance(vocab, dict):
        id_to_tok = {int(i): t for t, i in vocab.items()}
    else:  # Unigram: list of [piece, score]
        id_to_tok = {i: entry[0] for i, entry in enumerate(vocab)}
    special = set()
    for added in spec.get("added_tokens", []):
        id_to_tok[int(added["id"])] = added["content"]
        if added.get("special", False):
            special.add(int(added["id"]))
    kind = str(model.get("type", ""))
    if kind == "BPE":
        kind = "gpt2" if any(t.startswith("Ġ") for t in list(id_to_tok.values())[:5000]) else "bpe"
    return id_to_tok, special, kind.lower()


def _hf_gamma(folder: Path) -> np.ndarray:
    from safetensors import safe_open

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
    return np.ascontiguousarray(gamma, dtype=np.float32)


def _hf_config(folder: Path) -> dict:
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        return cfg if isinstance(cfg, dict) else {}
    except (OSError, ValueError):
        return {}


def read_hf_unembedding(folder: str | os.PathLike) -> _Read:
    """Read γ and the vocabulary from a Hugging Face model folder (safetensors + tokenizer.json).

    Rows of γ beyond the tokenizer's vocabulary (padding rows) get token type 0 and are never used.
    """
    folder = Path(folder)
    id_to_tok, special, tok_model = _hf_vocab(folder)
    gamma = _hf_gamma(folder)
    n = gamma.shape[0]
    tokens = [id_to_tok.get(i, "") for i in range(n)]
    token_type = np.array(
        [0 if i not in id_to_tok else (3 if i in special else NORMAL) for i in range(n)],
        dtype=np.int32,
    )
    cfg = _hf_config(folder)
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}
    n_layers = cfg.get("num_hidden_layers") or text.get("num_hidden_layers")
    label = FileLabel(
        name=str(cfg.get("_name_or_path", "")) or folder.name,
        architecture=str(cfg.get("model_type", "")),
        quantization=str(cfg.get("torch_dtype") or cfg.get("dtype") or ""),
    )
    n_layers = int(n_layers) if isinstance(n_layers, int) else None
    return _Read(gamma, tokens, token_type, tok_model, n_layers, label)


def _from_entry(entry: Path, source: ModelSource) -> Unembedding | None:
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if meta.get("version") != _CACHE_VERSION:
            return None
        gamma = np.load(entry / "gamma.npy")
        token_type = np.load(entry / "token_type.npy")
        tokens = json.loads((entry / "tokens.json").read_text(encoding="utf-8"))
        label = FileLabel(**meta["label"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not gamma.shape[0] == len(tokens) == token_type.shape[0]:
        return None
    return Unembedding(
        gamma,
        tokens,
        token_type,
        meta["tokenizer_model"],
        source.name,
        source.sha256,
        meta.get("n_layers"),
        label,
    )


def _fill_entry(read: _Read, source: ModelSource):
    def fill(tmp: Path) -> None:  # a temporary folder, published by ModelCache.store
        np.save(tmp / "gamma.npy", read.gamma)
        np.save(tmp / "token_type.npy", read.token_type)
        (tmp / "tokens.json").write_text(
            json.dumps(read.tokens, ensure_ascii=False), encoding="utf-8"
        )
        meta = {
            "version": _CACHE_VERSION,
            "model": source.name,
            "sha256": source.sha256,
            "shape": list(read.gamma.shape),
            "tokenizer_model": read.tokenizer_model,
            "n_layers": read.n_layers,
            "label": asdict(read.label),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")

    return fill


def load_unembedding(
    source: ModelSource,
    cache: ModelCache | str | os.PathLike | bool | None = None,
    *,
    progress: bool = True,
) -> Unembedding:
    """γ, vocabulary and file label of a model, from the checked cache entry when present.

    Args:
        source: the model (see :func:`linrep.llm.resolve_model`).
        cache: the model cache, a cache folder, None (the user cache) or False (no cache).
        progress: progress bars and messages.
    """
    cache = ModelCache.of(cache)
    entry = cache.load("gamma", source.sha256, source.sha256)
    if entry is not None:
        unemb = _from_entry(entry, source)
        if unemb is not None:
            return unemb
    if source.kind == "gguf":
        read = read_gguf_unembedding(source.path, progress)
    else:
        read = read_hf_unembedding(source.path)
    cache.store("gamma", source.sha256, source.sha256, _fill_entry(read, source))
    return Unembedding(
        read.gamma,
        read.tokens,
        read.token_type,
        read.tokenizer_model,
        source.name,
        source.sha256,
        read.n_layers,
        read.label,
    )
