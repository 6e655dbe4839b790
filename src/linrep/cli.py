"""The ``linrep`` command. Thin: it parses arguments and calls the package's Python API.

Each subcommand is a pair of functions, ``_add_<name>(subparsers)`` and ``_run_<name>(args)``,
registered in :data:`COMMANDS`. Any :class:`~linrep.errors.LinrepError` becomes a one-line
``linrep: error: ...`` message and exit status 2 (no traceback).

Output folders: :func:`main` runs every command that has ``--out DIR`` inside
:func:`linrep.io.staged_output`, so ``_run_<name>`` writes into ``args.out`` (the staging folder
``.DIR.partial`` beside DIR) and prints paths with ``args.final_out`` (DIR as the user wrote it); the
results appear in DIR all at once when the command returns. SIGTERM is handled like Ctrl-C. When
stderr is not a terminal, progress bars are turned into a few plain lines (:mod:`linrep.progress`).
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from .errors import LinrepError, TrainingError

__all__ = ["main", "build_parser"]


def _add_set_option(p: argparse.ArgumentParser, example: str, metavar: str) -> None:
    """The repeatable ``--set SECTION.KEY=VALUE`` override shared by the config-driven commands."""
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar=metavar,
        help=f"override a config value, e.g. --set {example} (repeatable)",
    )


def _add_out_option(p: argparse.ArgumentParser, what: str = "results") -> None:
    """``--out DIR`` with ``--resume`` / ``--overwrite``: the output protocol of every command."""
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help=f"folder for the {what}; they appear there all at once when the command finishes "
        "(work in progress lives in .DIR.partial beside it)",
    )
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--resume",
        action="store_true",
        help="continue the work of an interrupted or finished run in DIR",
    )
    g.add_argument("--overwrite", action="store_true", help="replace the results already in DIR")


# --------------------------------------------------------------------------------------- latent
def _add_latent(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "latent",
        help="build the exact tables of a latent conditional model",
        description=(
            "Build the latent conditional model of a config's [latent] section: print a summary "
            "(m, tokens, contexts, conditional entropy, which concepts are in the log-odds-matching "
            "regime) and write OUT/latent.npz (tokens, contexts with -1 for unknown, p_next, "
            "p_concepts, weights) and OUT/latent_summary.json."
        ),
    )
    p.add_argument("config", type=Path, help="TOML config file with a [latent] section")
    _add_out_option(p, "tables")


def _run_latent(args: argparse.Namespace) -> None:
    from .config import load_toml
    from .io import write_json
    from .latent import LatentModel

    raw = load_toml(args.config)
    if "latent" not in raw:
        from .errors import ConfigError

        raise ConfigError(f"config '{args.config}' has no [latent] section; add one (see configs/)")
    model = LatentModel.from_config(raw["latent"])
    out = args.out
    summary = model.summary()
    model.save(out / "latent.npz")
    write_json(out / "latent_summary.json", summary)
    print(f"m = {model.m} concepts ({', '.join(model.names)}), kind = {model.config.kind}")
    print(f"{model.n_tokens} tokens, {model.n_contexts} contexts")
    print(f"conditional entropy H(Y|X) = {summary['conditional_entropy_nats']:.4f} nats")
    for r in model.regimes():
        tag = "log-odds matching" if r.in_regime else "not matching"
        print(
            f"  {r.name:>12s}: {tag:<17s} (pair log-odds spread {r.pair_log_odds_spread:.3g}, "
            f"alpha {r.alpha:.3f})"
        )
    print(f"wrote {args.final_out / 'latent.npz'} and {args.final_out / 'latent_summary.json'}")


# ---------------------------------------------------------------------------------------- sweep
def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be ≥ 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _add_sweep(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a grid / random sweep of training runs on Ray",
        description=(
            "Expand SWEEP.toml (a training config plus a [sweep] section: grid, random search, "
            "cases, seeds) into runs, train runs that share shapes as one batched ensemble per Ray "
            "task, and write DIR/results.csv (one row per run) and DIR/report.html. While it runs, "
            "the table is updated atomically in .DIR.partial/ as tasks finish; --resume continues "
            "an interrupted sweep (finished runs are skipped, failed ones retried). Exits with "
            "status 2 if any run failed (the results, failed runs included, are still written)."
        ),
    )
    p.add_argument("sweep", type=Path, help="sweep file (TOML with a [sweep] section)")
    _add_out_option(p, "results table and report")
    p.add_argument(
        "--address",
        default=None,
        help="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto); default: a local Ray instance",
    )
    p.add_argument(
        "--connect-timeout",
        type=_positive_float,
        default=60.0,
        metavar="SECONDS",
        help="give up joining the --address cluster after this long (default 60)",
    )
    p.add_argument(
        "--max-parallel",
        type=_positive_int,
        default=None,
        metavar="N",
        help="most ensembles training at once (local Ray CPUs; default: all cores)",
    )
    p.add_argument(
        "--serial", action="store_true", help="no Ray: run the ensembles one by one in this process"
    )
    p.add_argument("--no-report", action="store_true", help="skip report.html")
    p.add_argument(
        "--dry-run", action="store_true", help="print the runs and ensembles, train nothing"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_sweep(args: argparse.Namespace) -> None:
    from .sweep import describe_sweep, run_sweep

    if args.dry_run:
        print(describe_sweep(args.sweep, args.out))
        return
    res = run_sweep(
        args.sweep,
        args.out,
        address=args.address,
        max_parallel=args.max_parallel,
        serial=args.serial,
        progress=not args.quiet,
        report=not args.no_report,
        connect_timeout=args.connect_timeout,
        log=lambda line: print(args.stage.describe(line), file=sys.stderr, flush=True),
    )
    print(
        f"{res.n_runs} runs: {res.n_ok} ok, {res.n_failed} failed, {res.n_skipped} skipped as done "
        f"({res.wall_time_s:.1f} s)"
    )
    report = " and report.html" if res.report else ""
    print(f"wrote {args.final_out / 'results.csv'}{report}")
    if res.n_failed:
        args.stage.publish()  # the finished table is kept; the exit status reports the failures
        first = next(r.get("error") for r in res.rows if r["status"] == "failed")
        raise TrainingError(
            f"{res.n_failed} of {res.n_runs} runs failed (first: {first}); their rows are in "
            f"'{args.final_out / 'results.csv'}': fix the cause and re-run with --resume to retry them"
        )


# ---------------------------------------------------------------------------------------- train
def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train next-token learners on a latent model (batched over seeds)",
        description=(
            "Train p(y|x) = softmax(f(x)^T g(y)) on the latent model of CONFIG ([latent], [model], "
            "[train] sections), all seeds as one batched ensemble. Writes DIR/config.json (resolved "
            "configs), history.csv, params.safetensors, embeddings.npz, metrics.json and "
            "checkpoint.pt (see configs/train_*.toml)."
        ),
    )
    p.add_argument("config", type=Path, help="TOML config with [latent], [model], [train]")
    _add_out_option(p, "trained parameters, history and checkpoint")
    _add_set_option(p, example="train.lr=0.5", metavar="SECTION.KEY=VALUE")
    p.add_argument(
        "--seeds",
        default=None,
        help="seeds to train together, e.g. 0-9 or 1,4,7 (default: train.seed)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_train(args: argparse.Namespace) -> None:
    from .learn.run import train_from_config

    if args.resume and not (args.out / "checkpoint.pt").exists():
        print(f"no checkpoint to resume in {args.final_out}; starting from step 0")
    res = train_from_config(
        args.config,
        args.out,
        args.overrides,
        args.seeds,
        resume=args.resume,
        progress=not args.quiet,
    )
    tc = res.train_configs[0]
    print(
        f"trained {res.K} run(s) of {res.model_configs[0].encoder} f, d = {res.model_configs[0].d}, "
        f"{tc.optimizer} lr {tc.lr}, {tc.steps} steps in {res.seconds:.1f} s"
    )
    for row in res.final:
        se = f" ± {row['excess_loss_se']:.1e}" if "excess_loss_se" in row else ""
        print(
            f"  seed {row['seed']:>4d}: loss {row['loss']:.5f}, excess {row['excess_loss']:.2e}{se}"
        )
    for k, reason in sorted(res.failed.items()):  # stopped by a NaN; the others went on
        print(f"  seed {res.seeds[k]:>4d}: FAILED ({reason})", file=sys.stderr)
    print(f"excess loss: {res.excess_loss_method}")
    print(f"wrote {args.final_out}/{{config.json, history.csv, params.safetensors, metrics.json}}")


# ------------------------------------------------------------------------------------ simulate
def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="train one config and measure its concept geometry (metrics.json + report.html)",
        description=(
            "Train the [model]/[train] learner of CONFIG on its [latent] model (all seeds as one "
            "batched ensemble) and measure the concept geometry: DIR/metrics.json (same-concept "
            "cosine, cross-concept |cosine|, alignment, log-odds matching error, excess loss: means "
            "over concepts, per-concept lists, 95 % seed intervals; Euclidean unless suffixed "
            "_causal), DIR/report.html, report.md, results.json, figures/ and the training outputs "
            "in DIR/train/ (see configs/simulate*.toml)."
        ),
    )
    p.add_argument(
        "config", type=Path, help="TOML config with [latent], [model], [train], [simulate]"
    )
    _add_out_option(p, "metrics, report and training outputs")
    p.add_argument(
        "--seeds",
        default=None,
        help="seeds, e.g. 0-9 or 1,4,7 (default: [simulate] seeds or train.seed)",
    )
    _add_set_option(p, example="model.encoder=mlp", metavar="SECTION.KEY=VALUE")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_simulate(args: argparse.Namespace) -> None:
    from .experiments.simulate import simulate

    doc = simulate(
        args.config,
        args.out,
        seeds=args.seeds,
        overrides=args.overrides,
        progress=not args.quiet,
        resume=args.resume,
    )
    m = doc["metrics"]
    ident = doc["identifiable"]
    print(f"seeds {doc['seeds']}; mean ± 95 % CI over seeds (Euclidean):")
    print(
        f"  span{{f}} has rank F = {sorted(set(ident['rank']))} of d = {ident['d']}: "
        "*_identifiable keys measure g inside it (what the logits see)"
    )
    for key, s in m.items():
        lo, hi = s["ci"]
        ci = f" [{lo:.4g}, {hi:.4g}]" if lo is not None and lo == lo else ""
        print(f"  {key:<32s} {s['mean']:.4g}{ci}")
    print(f"wrote {args.final_out}/metrics.json and {args.final_out}/report.html")


# ----------------------------------------------------------------------------------- reproduce
def _add_reproduce(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce the simulation experiments E1 … E10 (one report each + an index)",
        description=(
            "Run experiments E1 … E10 (or 'all') with their configs in configs/e*.toml and write "
            "DIR/<experiment>/report.html, report.md, results.json, figures/ for each, plus an "
            "index DIR/report.html with every headline number (mean ± 95 % CI over seeds). "
            "--quick uses fewer seeds and steps (same code paths); the README gives measured "
            "times of both modes and the machine they were measured on."
        ),
    )
    p.add_argument(
        "experiments", nargs="*", default=["all"], metavar="E", help="E1 … E10 or all (default)"
    )
    _add_out_option(p, "reports")
    p.add_argument("--quick", action="store_true", help="fewer seeds and steps, same code paths")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _run_reproduce(args: argparse.Namespace) -> None:
    from .experiments import reproduce
    from .experiments.index import headline_text

    summaries = reproduce(
        args.experiments, args.out, quick=args.quick, progress=not args.quiet, resume=args.resume
    )
    for s in summaries:
        print(f"{s.name} {s.title} ({s.wall_time_s:.0f} s): {headline_text(s.headline)}")
    print(f"wrote {args.final_out}/report.html")


# ------------------------------------------------------------------------------------------ llm
def _add_llm(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "llm",
        help="concept geometry of a real language model (offline): unembedding, contexts, steering",
        description=(
            "Measure concept directions of a real causal LM: leave-one-out cosines with random-pair "
            "and shuffled nulls, cross-concept cosine matrices under the Euclidean / causal / random "
            "inner products, analogies, embedding-unembedding alignment (label-permutation null) "
            "and probes on paired contexts, at one layer or every layer, the final-layer "
            "intervention, and cross-fitted steering through the network (--steer). Writes "
            "OUT/report.html and OUT/results.json (several --model: one sub-folder per model plus a "
            "comparison report in OUT). Never downloads. Python: linrep.llm.analyze(model, tok)."
        ),
    )
    p.add_argument(
        "--model",
        action="append",
        default=None,
        metavar="NAME|PATH",
        help="gemma-3-270m (default), smollm2-135m, qwen2.5-0.5b, a .gguf file or a Hugging Face "
        "model folder (safetensors); repeat to compare models",
    )
    p.add_argument(
        "--concepts", default=None, metavar="builtin|DIR", help="word pairs: '[base - target].txt'"
    )
    p.add_argument(
        "--contexts",
        default=None,
        metavar="builtin|DIR|none",
        help="paired contexts ('[base - target].tsv' or Park et al.'s paired_contexts '.jsonl'); "
        "'none' = unembedding only (no full model)",
    )
    p.add_argument(
        "--layer",
        default=None,
        metavar="L|all|L1,L2,...",
        help="hidden-state layer of the embedding side (default -1: final, post-norm); 'all' or a "
        "comma list adds the per-layer profile",
    )
    p.add_argument(
        "--steer",
        action="append",
        default=None,
        metavar="CONCEPT",
        help="steer this concept through the network and measure on/off-target log-odds on "
        "held-out contexts (repeatable)",
    )
    p.add_argument(
        "--estimator",
        default=None,
        choices=["mean", "lda", "logistic", "pca"],
        help="direction estimator (default mean difference)",
    )
    p.add_argument(
        "--hierarchy",
        default=None,
        metavar="builtin|DIR",
        help="also measure a category hierarchy (Park et al. 2024): '<category>.txt' files and "
        "hierarchy.txt with 'parent<TAB>child' lines; reads the unembedding only, so contexts "
        "default to 'none' here (pass --contexts builtin to add the forward passes)",
    )
    _add_out_option(p, "report and results")
    p.add_argument("--config", type=Path, default=None, help="TOML file with an [llm] section")
    _add_set_option(p, example="llm.n_shuffles=0", metavar="llm.KEY=VALUE")
    p.add_argument(
        "--cache", default=None, metavar="DIR", help="cache folder (default $LINREP_CACHE)"
    )
    p.add_argument("--no-cache", action="store_true", help="do not read or write the model cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _layer_arg(text: str) -> int | str | list[int]:
    from .errors import InputError

    text = text.strip()
    if text == "all":
        return text
    try:
        parts = [int(x) for x in text.split(",")]
    except ValueError:
        raise InputError(
            f"--layer '{text}' is not a layer; pass an integer, 'all' or a comma list (e.g. 2,8,16)"
        ) from None
    return parts[0] if len(parts) == 1 and "," not in text else parts


def _llm_table(args: argparse.Namespace) -> tuple[dict, list[str]]:
    """The ``[llm]`` table from ``--config``, ``--set`` and the flags (flags win), and the models."""
    import dataclasses

    from .config import apply_overrides, check_sections, load_toml
    from .llm.options import LLMConfig

    raw = load_toml(args.config) if args.config is not None else {}
    if raw:
        check_sections(raw, ["llm"], where=str(args.config))
    raw.setdefault("llm", {})
    apply_overrides(raw, args.overrides, {"llm": [f.name for f in dataclasses.fields(LLMConfig)]})
    table = raw["llm"]
    flags = {
        "concepts": args.concepts,
        "contexts": args.contexts,
        "estimator": args.estimator,
        "steer": args.steer,
        "cache": args.cache,
        "hierarchy": args.hierarchy,
    }
    table |= {k: v for k, v in flags.items() if v is not None}
    if args.layer is not None:
        table["layer"] = _layer_arg(args.layer)
    if table.get("hierarchy") and not any(k in table for k in ("contexts", "layer", "steer")):
        # the hierarchy reads γ only; contexts would add minutes of forward passes nobody asked for
        table["contexts"] = "none"
    if args.no_cache:
        table["use_cache"] = False
    return table, args.model or [table.get("model", LLMConfig.model)]


def _run_llm(args: argparse.Namespace) -> None:
    from .llm.options import LLMConfig
    from .llm.reporting import write_comparison_report
    from .llm.run import model_keys, run_llm

    table, models = _llm_table(args)
    keys = model_keys(models)
    configs = [LLMConfig.from_dict({**table, "model": spec}) for spec in models]
    out, final = args.out, getattr(args, "final_out", args.out)  # staging folder, published folder
    results = []
    for cfg, key in zip(configs, keys, strict=True):
        sub = (lambda root: root) if len(models) == 1 else (lambda root, k=key: root / k)
        results.append(run_llm(cfg, sub(out), progress=not args.quiet))
        _print_llm_summary(results[-1], sub(final))
    if len(results) > 1:
        write_comparison_report(results, out, keys)
        print(f"wrote the cross-model comparison to {final / 'report.html'}")


def _print_llm_summary(res, out: Path) -> None:
    from .llm.reporting import summary_lines

    print("\n".join(summary_lines(res)))
    print(f"  total {res.timings['total_s']:.1f} s; wrote {out / 'report.html'} and results.json")


COMMANDS: dict[str, tuple[Callable, Callable]] = {
    "latent": (_add_latent, _run_latent),
    "train": (_add_train, _run_train),
    "sweep": (_add_sweep, _run_sweep),
    "simulate": (_add_simulate, _run_simulate),
    "reproduce": (_add_reproduce, _run_reproduce),
    "llm": (_add_llm, _run_llm),
}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``linrep`` command (one subparser per entry of COMMANDS)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("linrep")
    except PackageNotFoundError:  # running from a source tree
        v = "unknown"
    parser = argparse.ArgumentParser(
        prog="linrep",
        description=(
            "linrep: why do language models represent concepts linearly, and how linear are they? "
            "Latent conditional models, next-token learners, concept geometry and real LLMs."
        ),
    )
    parser.add_argument("--version", action="version", version=f"linrep {v}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add, _ in COMMANDS.values():
        add(sub)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it unwinds exactly like Ctrl-C."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def on_term(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (main() called from a thread): leave signals alone
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _dispatch(args: argparse.Namespace) -> None:
    """Run the command; one with ``--out`` runs inside a staged, locked output folder."""
    run = COMMANDS[args.command][1]
    if getattr(args, "out", None) is None or getattr(args, "dry_run", False):
        run(args)
        return
    from .io import staged_output

    args.final_out = args.out
    with staged_output(
        args.out, resume=args.resume, overwrite=args.overwrite, command=args.command
    ) as stage:
        args.stage, args.out = stage, stage.path
        run(args)


def _describe(args: argparse.Namespace, text: str) -> str:
    stage = getattr(args, "stage", None)
    return text if stage is None else stage.describe(text)


def _kept_note(args: argparse.Namespace) -> str:
    """Where the unfinished work of a failed command is, if it was kept."""
    from .io import show

    stage = getattr(args, "stage", None)
    if stage is None or not stage.kept:
        return ""
    unchanged = f"; '{args.final_out}' is unchanged" if stage.final.exists() else ""
    return (
        f" (work so far kept in '{show(stage.path)}': --resume continues it, --overwrite "
        f"discards it{unchanged})"
    )


def _interrupted(args: argparse.Namespace, e: KeyboardInterrupt) -> str:
    what = "stopped by SIGTERM" if isinstance(e, Terminated) else "interrupted"
    stage = getattr(args, "stage", None)
    if stage is None:
        return f"linrep: {what}"
    if stage.kept:
        from .io import show

        unchanged = f" ('{args.final_out}' is unchanged)" if stage.final.exists() else ""
        return (
            f"linrep: {what}; the work so far is in '{show(stage.path)}': run the same command "
            f"with --resume to continue{unchanged}"
        )
    return f"linrep: {what} before anything was saved; nothing was changed"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``linrep`` console script; returns the exit status."""
    from .progress import status_lines_unless_terminal

    parser = build_parser()
    args = parser.parse_args(argv)
    with _sigterm_as_interrupt(), status_lines_unless_terminal():
        try:
            _dispatch(args)
        except LinrepError as e:
            print(f"linrep: error: {_describe(args, str(e))}{_kept_note(args)}", file=sys.stderr)
            return e.exit_code
        except KeyboardInterrupt as e:
            print(_interrupted(args, e), file=sys.stderr)
            return 143 if isinstance(e, Terminated) else 130
        except BrokenPipeError:  # e.g. `linrep ... | head`: the reader left; stay quiet
            import os

            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        except (OSError, MemoryError) as e:  # I/O or memory failures no reader/writer turned into
            msg = _describe(args, _environment_error(e))
            print(f"linrep: error: {msg}{_kept_note(args)}", file=sys.stderr)
            return 2
    return 0


def _environment_error(e: OSError | MemoryError) -> str:
    if isinstance(e, MemoryError):
        return "out of memory; reduce the sizes in the config (seeds, d, width, contexts)"
    where = f" ('{e.filename}')" if e.filename else ""
    return f"{e.strerror or e}{where}; check the files and folders involved"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
