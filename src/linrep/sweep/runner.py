"""Running a sweep: skip finished runs, pack the rest into ensembles, train them on Ray, record.

The driver (this process) expands the sweep file, drops runs that already have an ``ok`` row in
``DIR/results.csv``, groups the rest (:mod:`linrep.sweep.groups`) and submits one Ray task per group
(:func:`linrep.sweep.worker.train_group`). As each task finishes its rows are added to the table,
which is rewritten atomically, so killing the sweep at any moment loses at most the groups in flight
and re-running the same command resumes.

Failures: Ray retries a task that crashed or raised (``max_retries`` = ``retry_exceptions`` =
``sweep.retries``). If an ensemble still fails, or fails with a deterministic linrep error, it is
split and each run is tried alone, so one diverging seed does not take its group down with it; a
run that fails alone is recorded with ``status = "failed"`` and its error, and the sweep goes on.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, InputError, LinrepError
from ..io import ensure_out_dir, read_json, run_metadata, write_json
from .groups import Group, make_groups
from .spec import SweepSpec, canonical_json, load_sweep
from .table import ResultsTable, read_results
from .worker import train_group

__all__ = ["SweepResult", "run_sweep", "plan_sweep", "describe_sweep", "FAULT_ENV"]

MAX_IN_FLIGHT = 1024
"""Most tasks submitted to a cluster at once when --max-parallel is not given."""

FAULT_ENV = "LINREP_SWEEP_FAULT_DIR"
"""Fault injection for reliability tests: if this environment variable names a folder, every task
crashes its worker the first time it runs (leaving a marker file there), as an OOM kill would."""


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    out_dir: Path
    rows: list[dict[str, Any]]
    """Every row of ``results.csv`` (typed), in the order of the sweep's runs."""
    n_runs: int
    n_skipped: int
    """Runs already finished before this call."""
    n_ok: int
    n_failed: int
    n_groups: int
    """Ensembles (tasks) trained in this call (before any split after a failure)."""
    wall_time_s: float
    report: Path | None


def plan_sweep(spec: SweepSpec, table: ResultsTable) -> tuple[list[Group], int]:
    """Groups of the runs still to do (no ``ok`` row yet) and the number of runs skipped."""
    todo = [r for r in spec.runs if table.status(r.run_id) != "ok"]
    return make_groups(todo, spec.sweep.max_group_size), len(spec.runs) - len(todo)


def _check_folder(out: Path, spec: SweepSpec) -> None:
    """A folder holds one sweep: refuse to mix results of a different base config."""
    meta_path = out / "sweep.json"
    results = out / "results.csv"
    if meta_path.exists():
        meta = read_json(meta_path)
        old = meta.get("fingerprint") if isinstance(meta, dict) else None
        if old != spec.fingerprint:
            diff = _first_difference(
                meta.get("base", {}) if isinstance(meta, dict) else {}, spec.base
            )
            raise ConfigError(
                f"'{out}' holds a sweep with a different base config ({diff}); "
                "use a new --out folder or restore the old base config"
            )
    else:
        for name in ("results.csv", "report.html", "results.json"):
            if (out / name).exists():
                raise InputError(
                    f"'{out / name}' exists but '{meta_path}' does not, so it is not from linrep "
                    "sweep; choose another --out folder"
                )
    if results.exists():
        read_results(results, typed=False)  # damaged table → clear error before any training


def _first_difference(old: Any, new: Any, where: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            d = _first_difference(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return ""
    if canonical_json(old) != canonical_json(new):
        return f"{where}: {old!r} before, {new!r} now"
    return ""


# ------------------------------------------------------------------ executors
def _one_line(err: BaseException) -> str:
    cause = getattr(err, "cause", None)  # ray.exceptions.RayTaskError wraps the task's exception
    if isinstance(cause, BaseException):
        err = cause
    text = str(err).strip().splitlines()
    msg = text[-1] if text else ""
    return f"{type(err).__name__}: {msg}" if msg else type(err).__name__


def _serial(payloads: list[dict], retries: int) -> Iterator[tuple[int, dict]]:
    """Run tasks one after another in this process (``--serial``), retrying raised exceptions."""
    for i, payload in enumerate(payloads):
        for attempt in range(retries + 1):
            try:
                yield i, _task(payload)
                break
            except Exception as e:  # noqa: BLE001 - anything non-linrep is retried, then recorded
                if attempt == retries:
                    yield i, {"ok": False, "error": _one_line(e)}


def _task(payload: dict) -> dict:
    fault_dir = os.environ.get(FAULT_ENV)
    if fault_dir:
        marker = Path(fault_dir) / payload["group_id"]
        if not marker.exists():
            marker.touch()
            if payload.get("in_ray"):
                os._exit(1)  # the worker dies as if killed; Ray must notice and retry
            raise RuntimeError("injected fault (LINREP_SWEEP_FAULT_DIR)")
    return train_group(payload)


def _check_address(address: str) -> None:
    if address in ("auto", "local"):
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(
            f"--address '{address}' is not a Ray address; use HOST:PORT (e.g. 10.0.0.1:6379), "
            "ray://HOST:PORT or auto"
        )
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as e:
        raise InputError(
            f"cannot reach a Ray cluster at --address '{address}' ({e.strerror or e}); "
            "check the address or start the cluster with `ray start --head`"
        ) from None


def _with_deadline(connect: Callable[[], Any], timeout: float, address: str) -> None:
    """Run ``connect()`` in a daemon thread; give up (InputError) after ``timeout`` seconds."""
    box: dict[str, BaseException] = {}

    def target() -> None:
        try:
            connect()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            box["error"] = e

    thread = threading.Thread(target=target, name="linrep-ray-connect", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise InputError(
            f"no Ray cluster answered at --address '{address}' within {timeout:g} s (is it a Ray "
            "head node?); check the address, or raise --connect-timeout"
        )
    if "error" in box:
        raise box["error"]


def _import_ray():
    try:
        import ray
    except ImportError:
        raise InputError(
            "linrep sweep needs Ray: pip install 'linrep[ray]' (or run with --serial)"
        ) from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never phone home
    return ray


class _Ray:
    """A local Ray instance (``num_cpus = max_parallel``) or a connection to a cluster.

    Joining a cluster has a deadline (``connect_timeout`` seconds): Ray itself retries an address
    that is not a Ray head node for ever. ``ray.init`` replaces the SIGTERM handler; ours is put back.
    """

    def __init__(
        self, address: str | None, max_parallel: int, retries: int, connect_timeout: float
    ):
        ray = _import_ray()
        self.ray = ray
        previous = signal.getsignal(signal.SIGTERM)
        try:
            if address is None:
                self._init_local(ray, max_parallel)
            else:
                _with_deadline(
                    lambda: ray.init(address=address, log_to_driver=False, configure_logging=False),
                    connect_timeout,
                    address,
                )
        except LinrepError:
            raise
        except Exception as e:  # noqa: BLE001 - Ray raises many types for a bad cluster
            raise InputError(
                f"cannot start or join Ray ({_one_line(e)}); check --address or run with --serial"
            ) from None
        finally:
            if threading.current_thread() is threading.main_thread() and previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self.remote = ray.remote(num_cpus=1, max_retries=retries, retry_exceptions=True)(_task)

    @staticmethod
    def _init_local(ray, max_parallel: int) -> None:
        ray.init(
            address="local",  # always a fresh instance, never a cluster found on this host
            num_cpus=max_parallel,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",  # local instance: loopback only
            object_store_memory=128 * 2**20,
            log_to_driver=False,
            configure_logging=False,
        )

    def run(self, payloads: list[dict], window: int) -> Iterator[tuple[int, dict]]:
        """Submit at most ``window`` tasks at a time; yield (index, result) as they finish."""
        ray = self.ray
        queue = deque(enumerate(payloads))
        pending: dict[Any, int] = {}
        while queue or pending:
            while queue and len(pending) < window:
                i, p = queue.popleft()
                pending[self.remote.remote({**p, "in_ray": True})] = i
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                i = pending.pop(ref)
                try:
                    yield i, ray.get(ref)
                except Exception as e:  # noqa: BLE001 - Ray gave up after its retries
                    yield i, {"ok": False, "error": _one_line(e)}

    def close(self) -> None:
        self.ray.shutdown()


# ------------------------------------------------------------------ the sweep
def describe_sweep(sweep: SweepSpec | str | os.PathLike, out_dir: str | os.PathLike) -> str:
    """What ``run_sweep`` would do, as text (``linrep sweep --dry-run``); writes nothing."""
    spec = sweep if isinstance(sweep, SweepSpec) else load_sweep(sweep)
    out = Path(out_dir)
    if out.is_dir():
        _check_folder(out, spec)
    done: set[str] = set()
    if (out / "results.csv").exists():
        done = {str(r["run_id"]) for r in read_results(out, typed=False) if r["status"] == "ok"}
    todo = [r for r in spec.runs if r.run_id not in done]
    groups = make_groups(todo, spec.sweep.max_group_size)
    seeds = sorted({r.seed for r in spec.runs})
    lines = [
        f"{len(spec.runs)} runs ({len(spec.runs) - len(todo)} already done in '{out}'), "
        f"seeds {seeds[0]}..{seeds[-1]} ({len(seeds)})",
        f"swept: {', '.join(spec.swept) or 'seeds only'}",
        f"{len(groups)} batched ensembles to train:",
    ]
    for g in groups:
        first = g.runs[0].params
        same = {k: v for k, v in first.items() if all(r.params.get(k) == v for r in g.runs)}
        vary = [k for k in first if k not in same]
        text = ", ".join(f"{k}={v}" for k, v in same.items())
        if vary:
            text += f"; varying inside the ensemble: {', '.join(vary)}"
        case = f"[{g.runs[0].case}] " if g.runs[0].case else ""
        lines.append(f"  {g.group_id}: K = {len(g.runs):3d}  {case}{text}")
    return "\n".join(lines)


def run_sweep(
    sweep: SweepSpec | str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    address: str | None = None,
    max_parallel: int | None = None,
    serial: bool = False,
    progress: bool = True,
    report: bool = True,
    log: Callable[[str], None] | None = None,
    connect_timeout: float = 60.0,
) -> SweepResult:
    """Run (or resume) a sweep and write ``DIR/results.csv``, ``DIR/sweep.json`` and the report.

    Args:
        sweep: a sweep file path or a parsed :class:`~linrep.sweep.spec.SweepSpec`.
        out_dir: output folder DIR.
        address: Ray cluster address (``HOST:PORT``, ``ray://HOST:PORT`` or ``auto``); None starts
            a local Ray instance with ``max_parallel`` CPUs.
        max_parallel: most tasks running at once (default: the number of CPU cores for a local
            instance, no cap on a cluster).
        serial: run the groups one by one in this process, without Ray (debugging).
        progress: show a progress bar over runs.
        report: write ``report.html`` (figures of each metric vs each swept parameter).
        log: where status lines go (default: stderr).
        connect_timeout: seconds to wait for the ``address`` cluster to answer before giving up.

    Returns:
        A :class:`SweepResult`.
    """
    t0 = time.perf_counter()
    say = log or (lambda s: print(s, file=sys.stderr, flush=True))
    spec = sweep if isinstance(sweep, SweepSpec) else load_sweep(sweep)
    if max_parallel is not None and max_parallel < 1:
        raise InputError(f"--max-parallel = {max_parallel} must be ≥ 1")
    # a local instance gets one CPU per parallel task; on a cluster, Ray schedules every task
    # unless --max-parallel caps the tasks in flight
    parallel = max_parallel or (MAX_IN_FLIGHT if address else os.cpu_count() or 1)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out '{out}' is a file, not a folder; choose another --out path")
    if out.is_dir():
        _check_folder(out, spec)
    if address is not None and serial:
        raise InputError("--address and --serial exclude each other; drop one")
    if not serial:  # fail on a missing Ray or a bad address before writing anything
        _import_ray()
        if address is not None:
            _check_address(address)
    out = ensure_out_dir(out)
    table = ResultsTable(out / "results.csv", front=spec.swept, order=[r.run_id for r in spec.runs])
    groups, n_skipped = plan_sweep(spec, table)
    # join/start Ray before writing anything: a cluster that refuses us leaves DIR untouched
    executor = (
        _Ray(address, parallel, spec.sweep.retries, connect_timeout)
        if groups and not serial
        else None
    )
    try:
        write_json(
            out / "sweep.json",
            {
                "fingerprint": spec.fingerprint,
                "sweep_file": str(spec.path) if spec.path else None,
                "base": spec.base,
                "sweep": spec.sweep,
                "swept": spec.swept,
                "n_runs": len(spec.runs),
                "metadata": run_metadata(("ray",)),
            },
        )
        todo = sum(len(g.runs) for g in groups)
        say(
            f"sweep: {len(spec.runs)} runs, {n_skipped} already done, {todo} to train in "
            f"{len(groups)} ensembles"
            + ("" if executor is None else f" on Ray ({address or f'local, {parallel} CPUs'})")
        )
        if groups:
            _execute(spec, groups, table, out, address, parallel, progress, executor)
    finally:
        if executor is not None:
            executor.close()
    run_order = {r.run_id: i for i, r in enumerate(spec.runs)}
    rows = sorted(
        read_results(out / "results.csv") if (out / "results.csv").exists() else [],
        key=lambda r: run_order.get(str(r["run_id"]), len(run_order)),
    )
    mine = [r for r in rows if str(r["run_id"]) in run_order]
    n_ok = sum(r["status"] == "ok" for r in mine)
    n_failed = sum(r["status"] == "failed" for r in mine)
    report_path = None
    if report and mine:
        from .summary import write_report

        report_path = write_report(out, spec, mine, wall_time_s=time.perf_counter() - t0)
    say(f"sweep: {n_ok} ok, {n_failed} failed; results in {out / 'results.csv'}")
    return SweepResult(
        out_dir=out,
        rows=rows,
        n_runs=len(spec.runs),
        n_skipped=n_skipped,
        n_ok=n_ok,
        n_failed=n_failed,
        n_groups=len(groups),
        wall_time_s=time.perf_counter() - t0,
        report=report_path,
    )


def _execute(
    spec: SweepSpec,
    groups: list[Group],
    table: ResultsTable,
    out: Path,
    address: str | None,
    parallel: int,
    progress: bool,
    executor: _Ray | None,
) -> None:
    from ..progress import progress_bar

    by_id = {r.run_id: r for r in spec.runs}
    total = sum(len(g.runs) for g in groups)
    bar = progress_bar(total=total, desc="sweep", unit="run", enabled=progress, leave=True)
    ckpt_root = out / "groups" if address is None else None  # mid-run checkpoints: local only

    def payload(g: Group) -> dict:
        p = g.payload()
        p["geometry"] = spec.sweep.geometry
        p["inner"] = spec.sweep.inner
        p["probes"] = spec.sweep.probes
        p["out_dir"] = str(ckpt_root / g.group_id) if ckpt_root is not None else None
        p["threads"] = 1 if executor is not None else None
        return p

    def record(g: Group, result: dict) -> list[Group]:
        """Store a finished group's rows; return the sub-groups to try after a failure."""
        if not result["ok"] and len(g.runs) > 1:
            return g.split()
        if result["ok"]:
            rows = result["rows"]
        else:
            rows = [
                {"run_id": r.run_id, "status": "failed", "error": result["error"], "group_size": 1}
                for r in g.runs
            ]
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        full = []
        for row in rows:
            run = by_id[row["run_id"]]
            flat = {f"{s}.{k}": v for s, tbl in run.config.items() for k, v in tbl.items()}
            full.append(
                {"case": run.case, "seed": run.seed, **run.params, **flat, **row, "time_utc": now}
            )
        table.add(full)
        table.write()
        bar.update(len(rows))
        return []

    try:
        batch = groups
        while batch:
            payloads = [payload(g) for g in batch]
            results = (
                _serial(payloads, spec.sweep.retries)
                if executor is None
                else executor.run(payloads, parallel)
            )
            retry: list[Group] = []
            for i, result in results:
                retry.extend(record(batch[i], result))
            batch = retry
    finally:
        bar.close()
