"""Parameter sweeps on Ray, packing same-shape runs into batched ensembles.

A sweep file is a training config plus a ``[sweep]`` section (grid, random search, named cases,
seeds); see :mod:`linrep.sweep.spec`. ``linrep sweep SWEEP.toml --out DIR`` expands it into runs,
packs runs that share shapes into one batched ensemble per Ray task (:mod:`linrep.sweep.groups`),
records one row per run in ``DIR/results.csv`` as tasks finish (atomically; re-running resumes) and
writes ``DIR/report.html`` with every metric against every swept parameter.

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
