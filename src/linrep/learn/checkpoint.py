"""Checkpoints: θ, optimiser state, step, history and a config fingerprint in one ``torch.save`` file.

Written atomically (:func:`linrep.io.atomic_write_bytes`), read with ``weights_only=True`` (plain
tensors, numbers, strings, lists and dicts only). Minibatch draws are a function of (seed, step)
(see :mod:`linrep.learn.objective`), so no RNG state needs saving: training 2N steps equals training N,
checkpointing and resuming for N more, bit for bit.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError, InputError
from ..io import atomic_write_bytes, read_bytes

__all__ = ["save_checkpoint", "load_checkpoint", "check_fingerprint", "CHECKPOINT_NAME"]

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT = 2
_READABLE = (1, 2)  # format 1: before failed runs and the running minibatch loss were saved


def save_checkpoint(
    path: str | Path,
    *,
    theta: torch.Tensor,
    opt_state: dict[str, torch.Tensor],
    step: int,
    history: list[dict[str, Any]],
    fingerprint: dict[str, Any],
    failed: dict[int, dict[str, Any]] | None = None,
    window: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint atomically.

    ``failed``: runs stopped by a non-finite loss (run → plain-data record); ``window``: tensors of
    the running minibatch loss since the last history row (so a resumed run logs the same values).
    """
    buf = io.BytesIO()
    torch.save(
        {
            "format": FORMAT,
            "theta": theta.detach().cpu().clone(),
            "opt_state": {k: v.detach().cpu().clone() for k, v in opt_state.items()},
            "step": int(step),
            "history_json": json.dumps(history),
            "fingerprint_json": json.dumps(fingerprint, sort_keys=True),
            "failed_json": json.dumps({str(k): v for k, v in (failed or {}).items()}),
            "window": {k: v.detach().cpu().clone() for k, v in (window or {}).items()},
        },
        buf,
    )
    return atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint (``weights_only=True``); history, fingerprint and failed runs decoded.

    Raises:
        InputError: the file is unreadable, not a checkpoint, or a checkpoint that unpickles but
            misses a key or holds a malformed value (see :func:`_check_content`).
    """
    path = Path(path)
    data = read_bytes(path, "checkpoint")
    try:
        ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling problem means a corrupt file
        raise InputError(
            f"checkpoint '{path}' cannot be read ({type(e).__name__}); delete it and re-run"
        ) from None
    if not isinstance(ck, dict) or ck.get("format") not in _READABLE:
        raise InputError(f"checkpoint '{path}' has an unknown format; delete it and re-run")
    problem = _check_content(ck)
    if problem:
        raise InputError(
            f"checkpoint '{path}' is damaged ({problem}); delete it, or start again with "
            "--overwrite"
        )
    ck["history"] = json.loads(ck.pop("history_json"))
    ck["fingerprint"] = json.loads(ck.pop("fingerprint_json"))
    ck["failed"] = {int(k): v for k, v in json.loads(ck.pop("failed_json", "{}")).items()}
    ck.setdefault("window", {})
    return ck


def _check_content(ck: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's content, or None: every key present, every value typed."""
    theta, state, step = ck.get("theta"), ck.get("opt_state"), ck.get("step")
    if not isinstance(theta, torch.Tensor) or theta.ndim != 2:
        return "'theta' is missing or not a (K, P) tensor"
    if not isinstance(state, dict) or not all(
        isinstance(v, torch.Tensor) and v.shape[:1] == theta.shape[:1] for v in state.values()
    ):
        return "'opt_state' is missing or not a dict of (K, ...) tensors"
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        return "'step' is missing or not an integer ≥ 0"
    try:
        history = json.loads(ck["history_json"])
        fingerprint = json.loads(ck["fingerprint_json"])
        failed = json.loads(ck.get("failed_json", "{}"))
    except (KeyError, TypeError, ValueError, RecursionError):
        return "'history_json' or 'fingerprint_json' is missing or not JSON"
    if not isinstance(fingerprint, dict):
        return "the config fingerprint is not a table"
    if not isinstance(history, list) or not all(_is_row(r) for r in history):
        return "its history is not a list of rows with integer 'run' and 'step'"
    if not isinstance(failed, dict) or not all(
        isinstance(v, dict) and isinstance(v.get("reason"), str) for v in failed.values()
    ):
        return "its failed runs are not a table of reasons"
    window = ck.get("window", {})
    if not isinstance(window, dict) or not all(
        isinstance(v, torch.Tensor) for v in window.values()
    ):
        return "'window' is not a dict of tensors"
    return None


def _is_row(row: Any) -> bool:
    """A history row: a dict with integer ``run`` and ``step``."""
    if not isinstance(row, dict):
        return False
    return all(type(row.get(k)) is int for k in ("run", "step"))


def _first_difference(a: Any, b: Any, where: str = "") -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _first_difference(a.get(k), b.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = _first_difference(x, y, f"{where}[run {i}]")
            if d:
                return d
        return None
    if a != b:
        if isinstance(a, list) and isinstance(b, list):
            return f"{where}: {len(b)} runs in the checkpoint vs {len(a)} now"
        return f"{where} = {b!r} in the checkpoint vs {a!r} now"
    return None


def check_fingerprint(current: dict[str, Any], saved: dict[str, Any], path: Path) -> None:
    """Raise a one-line ConfigError if the checkpoint was written with a different config."""
    current = json.loads(json.dumps(current, sort_keys=True))
    diff = _first_difference(current, saved)
    if diff:
        raise ConfigError(
            f"cannot resume from '{path}': it was written with a different config ({diff}); "
            "use the same config or a new --out folder"
        )
