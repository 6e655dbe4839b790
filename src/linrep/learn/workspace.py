"""Reusable buffers for the intermediates of a training step.

A step of an ensemble allocates a few tensors of K·n·width floats (hundreds of KB at m = 5, K = 10).
glibc serves such blocks with ``mmap`` or returns them to the OS when they are freed, so every step
page-faults its intermediates in afresh; at m = 5, K = 10 (MLP) that doubled the step time. The
training loop therefore writes its intermediates into buffers that live as long as the model
(``out=`` arguments). Nothing held in a workspace escapes a call: results returned to callers are
fresh tensors (or the caller's own ``out``).
"""

from __future__ import annotations

import torch

__all__ = ["Workspace", "buffer"]


class Workspace:
    """Named buffers, reallocated only when the requested shape or dtype changes."""

    def __init__(self, device: torch.device | str = "cpu") -> None:
        self._bufs: dict[str, torch.Tensor] = {}
        self.device = torch.device(device)

    def __call__(self, name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        buf = self._bufs.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._bufs[name] = torch.empty(shape, dtype=dtype, device=self.device)
        return buf

    def clear(self) -> None:
        """Release every buffer (a trained model should not keep its step's scratch memory)."""
        self._bufs.clear()

    @property
    def nbytes(self) -> int:
        """Bytes held by the buffers."""
        return sum(b.numel() * b.element_size() for b in self._bufs.values())


def buffer(ws: Workspace | None, name: str, shape: tuple[int, ...], dtype: torch.dtype):
    """``ws(name, shape, dtype)``, or None (let torch allocate) when there is no workspace."""
    return None if ws is None else ws(name, tuple(shape), dtype)
