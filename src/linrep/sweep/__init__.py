"""Parameter sweeps on Ray, packing same-shape runs into batched ensembles.

A sweep file is a training config plus a ``[sweep]`` section (grid, random search, named cases,
seeds); see :mod:`linrep.sweep.spec`. ``linrep sweep SWEEP.toml --out DIR`` expands it into runs,
packs runs that share shapes into one batched ensemble per Ray task (:mod:`linrep.sweep.groups`),
records one row per run in ``DIR/results.csv`` as tasks finish (atomically; re-running resumes) and
writes ``DIR/report.html`` with every metric against every swept parameter.

Output folder DIR:

- ``results.csv``: one row per run — run_id, status (ok | failed), case, seed, the swept keys, the
  metrics (loss, excess_loss, param_norm, geometry metrics and their ``untrained_`` nulls),
  wall_time_s (the ensemble's wall time / K), group_wall_time_s, group_size, group_id, error,
  time_utc, then the run's full config (``latent.*``, ``model.*``, ``train.*``);
- ``sweep.json``: the base config, the ``[sweep]`` section, its fingerprint and run metadata;
- ``report.html`` (+ ``report.md``, ``results.json``, ``figures/``): every metric against every
  swept parameter, mean ± 95 % t-interval over seeds, the untrained mean as a reference line;
- ``groups/<group_id>/`` (local runs): each ensemble's checkpoint, history.csv,
  params.safetensors and embeddings.npz, as written by :func:`linrep.learn.fit`.

Python API::

    from linrep.sweep import run_sweep, read_results
    res = run_sweep("configs/sweep_architecture.toml", "runs/arch", max_parallel=2)
    rows = read_results("runs/arch")
"""

from .groups import Group, make_groups
from .runner import SweepResult, describe_sweep, run_sweep
from .spec import Run, SweepConfig, SweepSpec, load_sweep, parse_seeds, sweep_from_dict
from .table import ResultsTable, read_results

__all__ = [
    "SweepConfig",
    "SweepSpec",
    "Run",
    "Group",
    "SweepResult",
    "ResultsTable",
    "load_sweep",
    "sweep_from_dict",
    "parse_seeds",
    "make_groups",
    "run_sweep",
    "describe_sweep",
    "read_results",
]
