"""Threads for the few wide kernels of a step, one thread for everything else.

A table-free step is three (batch × d) × (d × V) matmuls and a softmax over (batch × V) — worth
several threads at V = 2^14 and beyond — plus a few dozen tiny kernels (gathers, the encoder of a
batch, bookkeeping). With more than one thread every kernel pays an OpenMP hand-off, and on a busy
machine a tiny kernel then waits for a descheduled worker: measured on this 2-core machine at load
2.4, twenty tiny kernels took 200 ms with 2 threads and 40 ms with one. So the step runs on one
thread and enters :func:`wide` only around its wide kernels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["wide", "one_thread"]


@contextlib.contextmanager
def wide(threads: int) -> Iterator[None]:
    """Run the block with ``threads`` torch threads (restored afterwards; no-op if unchanged)."""
    old = torch.get_num_threads()
    if threads == old:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one thread: torch's and numpy's BLAS (threadpoolctl) pools both.

    For small post-training work (a few hundred tiny kernels and small eigendecompositions): with
    torch's OpenMP workers still spinning after the step, numpy's multi-threaded BLAS waits for
    cores. Measured (m = 4, K = 10, d = 32 final geometry, 2 cores at load 3.8): 0.72 s with the
    default pools, 0.20 s with one thread.
    """
    from threadpoolctl import threadpool_limits

    with wide(1), threadpool_limits(limits=1, user_api="blas"):
        yield
