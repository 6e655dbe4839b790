"""Sharding an ensemble over processes (``train.workers``): K runs → W processes of ~K/W runs.

A batched step of a small ensemble runs on one core (thread hand-offs cost more than they save at
these sizes), so on a machine with idle cores the ensemble is split into W contiguous shards, each
trained by a forked copy of this process with one thread. The runs of an ensemble never interact,
so every run's numbers are exactly those of ``workers = 1`` (a test checks the bits); the shards'
results are merged into one :class:`~linrep.learn.result.TrainResult`.

With an output folder, shard i checkpoints into ``DIR/shards/<i>-of-<W>/`` (so ``--resume`` with the
same number of workers continues every shard); the merged results and checkpoint are written to
``DIR`` at the end and the shard folders removed.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import traceback
from pathlib import Path

import torch

from ..errors import LinrepError, TrainingError
from .checkpoint import CHECKPOINT_NAME, save_checkpoint
from .result import TrainResult

__all__ = ["fit_sharded", "split_runs"]


def split_runs(K: int, workers: int) -> list[range]:
    """W contiguous, near-equal shards of run indices 0..K−1."""
    base, extra = divmod(K, workers)
    out, start = [], 0
    for i in range(workers):
        size = base + (1 if i < extra else 0)
        out.append(range(start, start + size))
        start += size
    return [r for r in out if len(r)]


def _shard_dir(out: Path | None, i: int, n: int) -> Path | None:
    return None if out is None else out / "shards" / f"{i}-of-{n}"


def _train_shard(conn, latent, mcfgs, tcfgs, hooks, out, resume) -> None:
    """Child process: train one shard with one thread, send its plain results back."""
    from .trainer import Training

    try:
        torch.set_num_threads(1)
        with torch.no_grad():
            run = Training(latent, mcfgs, tcfgs, hooks, out, progress=False)
            if resume:
                run.restore()
            res = run.train()
        conn.send(("ok", _plain(res, run)))
    except LinrepError as e:
        conn.send(("linrep", (type(e).__name__, str(e))))
    except BaseException:  # noqa: BLE001 - report anything else to the parent with its traceback
        conn.send(("crash", traceback.format_exc()))
    finally:
        conn.close()


def _plain(res: TrainResult, run) -> dict:
    """The shard's results as numpy/plain data (tensors would travel as shared-memory handles)."""

    def arr(t: torch.Tensor):
        return t.detach().cpu().numpy()

    return {
        "theta": arr(res.theta),
        "theta0": arr(res.theta0),
        "history": res.history,
        "failed": run.failed,
        "opt_state": {k: arr(v) for k, v in run.opt.state_dict().items()},
        "window": {k: arr(v) for k, v in run.window.items()},
        "floor": res.loss_floor,
        "method": res.excess_loss_method,
        "seconds": res.seconds,
    }


def fit_sharded(latent, mcfgs, tcfgs, hooks, out, resume, workers) -> TrainResult:
    """Train the ensemble as ``workers`` forked shards and merge (see module docstring).

    ``out``: the output folder (or None).  Resuming a run whose merged checkpoint exists (it
    finished, or ran unsharded) is left to the caller.
    """
    shards = split_runs(len(tcfgs), workers)
    ctx = mp.get_context("fork")
    procs = []
    for i, r in enumerate(shards):
        parent, child = ctx.Pipe(duplex=False)
        sub = (mcfgs[r.start : r.stop], tcfgs[r.start : r.stop])
        args = (child, latent, *sub, hooks, _shard_dir(out, i, len(shards)), resume)
        p = ctx.Process(target=_train_shard, args=args, daemon=True)
        p.start()
        child.close()
        procs.append((p, parent))
    parts = []
    for (p, conn), r in zip(procs, shards, strict=True):
        try:
            kind, payload = conn.recv()
        except EOFError:
            kind, payload = "crash", f"shard process {p.pid} exited with code {p.exitcode}"
        p.join()
        parts.append((kind, payload, r))
    for kind, payload, r in parts:
        if kind == "linrep":
            name, msg = payload
            raise TrainingError(msg) if name == "TrainingError" else LinrepError(msg)
        if kind == "crash":
            raise RuntimeError(f"training shard of runs {r.start}..{r.stop - 1} failed:\n{payload}")
    return _merge(latent, mcfgs, tcfgs, out, [(payload, r) for _, payload, r in parts])


def _merge(latent, mcfgs, tcfgs, out, parts) -> TrainResult:
    """One result (and, with ``out``, one checkpoint) from the shards' θ, histories and states."""
    from .model import BatchedModel
    from .runs import fingerprint
    from .trainer import DTYPES, device_of

    history, failed, opt, window = [], {}, {}, {}
    for payload, r in parts:
        history += [{**row, "run": row["run"] + r.start} for row in payload["history"]]
        failed.update({int(k) + r.start: v for k, v in payload["failed"].items()})
        for name, v in payload["opt_state"].items():
            opt.setdefault(name, []).append(torch.from_numpy(v))
        for name, v in payload["window"].items():
            window.setdefault(name, []).append(torch.from_numpy(v))
    history.sort(key=lambda row: (row["step"], row["run"]))  # the unsharded order
    device = device_of(tcfgs[0])
    theta = torch.cat([torch.from_numpy(p["theta"]) for p, _ in parts]).to(device)
    first = parts[0][0]
    model = BatchedModel(mcfgs[0], latent.contexts, latent.n_tokens, DTYPES[tcfgs[0].dtype], device)
    fp = fingerprint(latent, mcfgs, tcfgs)
    result = TrainResult(
        model=model,
        theta=theta,
        theta0=torch.cat([torch.from_numpy(p["theta0"]) for p, _ in parts]).to(device),
        history=history,
        model_configs=mcfgs,
        train_configs=tcfgs,
        loss_floor=first["floor"],
        excess_loss_method=first["method"],
        seconds=max(p["seconds"] for p, _ in parts),
        latent_config=fp["latent_config"],
        failed={k: v["reason"] for k, v in failed.items()},
    )
    if out is not None:
        save_checkpoint(
            out / CHECKPOINT_NAME,
            theta=theta,
            opt_state={k: torch.cat(v) for k, v in opt.items()},
            step=tcfgs[0].steps,
            history=history,
            fingerprint=fp,
            failed=failed,
            window={"sum": torch.cat(window["sum"]), "count": window["count"][0]},
        )
        shutil.rmtree(out / "shards", ignore_errors=True)
    return result
