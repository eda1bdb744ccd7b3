"""``lstm-sweep``: the command line.

    lstm-sweep search [--config sweeps/quick.yaml] [--data DIR|builtin] [--samples N]
                      [--max-epochs N] [--max-concurrent N] [--out DIR] [--name NAME]
                      [--address ADDR]
    lstm-sweep report RUN_DIR
    lstm-sweep plan [--config FILE] [--samples N] [--trial-memory GB] [--gpu-memory GB]

A user error (missing folder, empty corpus, bad config) ends with one line on stderr and
exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from importlib import resources

DEFAULT_CONFIG = "quick.yaml"  # in the `sweeps` package


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-sweep", description="Hyperparameter sweeps for LSTM text models.")
    sub = parser.add_subparsers(dest="command", required=True)

    search = sub.add_parser("search", help="run a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA)")
    search.add_argument("--config", help=f"sweep YAML (default: the packaged sweeps/{DEFAULT_CONFIG})")
    search.add_argument("--data", help="folder of .txt files, or 'builtin' for the synthetic corpus")
    search.add_argument("--samples", type=int, help="number of trials (budget.num_samples)")
    search.add_argument("--max-epochs", type=int, help="epochs per trial at most (budget.max_epochs)")
    search.add_argument("--max-concurrent", type=int, help="trials at once (budget.max_concurrent)")
    search.add_argument("--out", help="folder for run folders (output)")
    search.add_argument("--name", help="run folder name (default: <config name>-<date>-<time>)")
    search.add_argument("--address", help="join an existing Ray cluster ('auto', 'host:port' or 'ray://...')")
    search.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all)")
    search.add_argument("--trial-memory", type=float, metavar="GB",
                        help="memory budget of each trial (resources.trial_memory_gb; default: automatic)")

    plan = sub.add_parser("plan", help="print each trial's predicted memory, batch and resources; train nothing")
    plan.add_argument("--config", help=f"sweep YAML (default: the packaged sweeps/{DEFAULT_CONFIG})")
    plan.add_argument("--samples", type=int, default=20,
                      help="configs to show: the whole grid if it is this small, else a sample (default 20)")
    plan.add_argument("--vocab", type=int, help="vocabulary size (default: the config's data.vocab_size cap)")
    plan.add_argument("--trial-memory", type=float, metavar="GB", help="memory budget of each trial")
    plan.add_argument("--gpu-memory", type=float, metavar="GB", help="memory of each GPU (resources.gpu_memory_gb)")

    report = sub.add_parser("report", help="rebuild trials.csv, curves.csv and val_loss.png of a run")
    report.add_argument("run_dir", help="a run folder made by `lstm-sweep search`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "address", None) is None:
        # Must precede the first `import ray` (see search.sweep.start_ray).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        return {"search": _search, "report": _report, "plan": _plan}[args.command](args)
    except ValueError as e:
        from data_pipeline import CorpusError
        from search.config import ConfigError

        if isinstance(e, (ConfigError, CorpusError)):
            print(f"lstm-sweep: error: {e}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print("lstm-sweep: interrupted", file=sys.stderr)
        return 130


def _search(args: argparse.Namespace) -> int:
    from results import format_leaderboard, trials_table
    from search.sweep import METRIC, MODE, run_sweep

    config = load_config_arg(args.config)
    config = config.with_overrides(**{
        "data.path": args.data, "budget.num_samples": args.samples, "budget.max_epochs": args.max_epochs,
        "budget.max_concurrent": args.max_concurrent, "output": args.out,
        "resources.trial_memory_gb": args.trial_memory,
    })
    outcome = run_sweep(config, name=args.name, address=args.address, num_cpus=args.num_cpus)
    table = trials_table(outcome.records, metric=METRIC, mode=MODE)
    print()
    print(format_leaderboard(table, top=5))
    print()
    for key, path in outcome.paths.items():
        print(f"{key:>8}: {path}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from search.sweep import rebuild_results

    outcome = rebuild_results(args.run_dir)
    for key, path in outcome.paths.items():
        print(f"{key:>8}: {path}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from search.plan import describe_sizer, plan_table, space_configs
    from search.resources import make_sizer, this_machine

    config = load_config_arg(args.config).with_overrides(**{
        "resources.trial_memory_gb": args.trial_memory, "resources.gpu_memory_gb": args.gpu_memory})
    if args.samples < 1:
        from search.config import ConfigError

        raise ConfigError(f"--samples {args.samples}: must be >= 1")
    sizer = make_sizer(config, args.vocab or config.data.vocab_size, this_machine())
    table = plan_table(space_configs(config, args.samples, seed=config.searcher.seed), sizer)
    print(describe_sizer(sizer))
    print(table.to_string(index=False))
    counts = table.status.value_counts()
    print(f"{len(table)} configs: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    return 0


def load_config_arg(path: str | None):
    """The config at ``path``, or the packaged default."""
    from search.config import load_config

    return load_config(path) if path else _packaged_config()


def _packaged_config():
    from search.config import load_config

    with resources.as_file(resources.files("sweeps") / DEFAULT_CONFIG) as path:
        return load_config(path)


if __name__ == "__main__":
    sys.exit(main())
