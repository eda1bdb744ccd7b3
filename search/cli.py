"""``lstm-sweep``: the command line.

    lstm-sweep search [--config sweeps/quick.yaml] [--data DIR|builtin] [--samples N]
                      [--max-epochs N] [--max-concurrent N] [--out DIR] [--name NAME]
                      [--address ADDR]
    lstm-sweep report RUN_DIR

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

    report = sub.add_parser("report", help="rebuild trials.csv, curves.csv and val_loss.png of a run")
    report.add_argument("run_dir", help="a run folder made by `lstm-sweep search`")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if getattr(args, "address", None) is None:
        # Must precede the first `import ray` (see search.sweep.start_ray).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        return {"search": _search, "report": _report}[args.command](args)
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
    from search.config import load_config
    from search.sweep import METRIC, MODE, run_sweep

    config = load_config(args.config) if args.config else _packaged_config()
    config = config.with_overrides(**{
        "data.path": args.data, "budget.num_samples": args.samples, "budget.max_epochs": args.max_epochs,
        "budget.max_concurrent": args.max_concurrent, "output": args.out,
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


def _packaged_config():
    from search.config import load_config

    with resources.as_file(resources.files("sweeps") / DEFAULT_CONFIG) as path:
        return load_config(path)


if __name__ == "__main__":
    sys.exit(main())
