"""``lstm-sweep``: the command line.

    lstm-sweep run      [search flags] [--epochs 10] [--prompt "i love"]   search -> retrain -> export -> samples
                        (a `task: classify` config: -> validation accuracy and predictions)
    lstm-sweep search   [--config sweeps/quick.yaml] [--data DIR|builtin] [--samples N]
                        [--max-epochs N] [--max-concurrent N] [--out DIR] [--name NAME]
                        [--address ADDR] [--num-cpus N] [--trial-memory GB] [--dashboard-host HOST]
                        [--mlflow URI] [--warm-start RUN_DIR ...]
    lstm-sweep search   --resume RUN_DIR [--address ADDR] [--num-cpus N]
    lstm-sweep report   RUN_DIR
    lstm-sweep retrain  RUN_DIR [--epochs 10] [--patience 3] [--dropout P]
                        [--samples-every N] [--temperatures 0.2,0.5,1.0,1.2]
    lstm-sweep export   RUN_DIR
    lstm-sweep generate EXPORT_DIR --prompt TEXT [--temperature 0.8] [--top-k 40]
                        [--max-tokens 20] [--num 3] [--seed S] [--stop-at newline|limit]
    lstm-sweep predict  EXPORT_DIR [TEXT ...] [--file F]     a classifier's label and probability per text
    lstm-sweep plan     [--config FILE] [--samples N] [--trial-memory GB] [--gpu-memory GB] [--classes N]
    lstm-sweep calibrate [--quick]     measure the memory model on this machine's device

A user error (missing folder, empty corpus, bad config, bad flag value) ends with one line on
stderr and exit status 2; anything else is a bug and keeps its traceback. Ctrl-C during a sweep
stops its trials, writes the results so far, says how to resume, and exits with status 130.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

from lstm_sweep import __version__, atomic
from lstm_sweep.atomic import is_disk_error
from lstm_sweep.errors import ConfigError, RunFolderError, UserError
from lstm_sweep.search.cluster import check_reachable, prepare_environment

DEFAULT_CONFIG = "quick.yaml"  # in the `sweeps` package
SAMPLE_PROMPT = "i love"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lstm-sweep", description="Hyperparameter sweeps for LSTM text models.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="the whole job: search, retrain the winner, export it, generate samples "
                                     "(a classifier: print its validation accuracy and predictions)")
    search = sub.add_parser("search", help="run a hyperparameter sweep (Ray Tune + Optuna TPE + ASHA)")
    for p in (run, search):
        p.add_argument("--config", help=f"sweep YAML (default: the packaged sweeps/{DEFAULT_CONFIG})")
        p.add_argument("--data", help="folder of .txt files, or 'builtin' for the synthetic corpus "
                                      "(data.path; default: the config's, builtin in quick.yaml)")
        p.add_argument("--samples", type=int, help="number of trials (budget.num_samples; default: the config's, "
                                                   "12 in quick.yaml)")
        p.add_argument("--max-epochs", type=int, help="epochs per trial at most (budget.max_epochs; default: the "
                                                      "config's, 6 in quick.yaml)")
        p.add_argument("--max-concurrent", type=int, help="trials at once (budget.max_concurrent; default: the "
                                                          "config's, 2 in quick.yaml; Ray's CPUs bound it too)")
        p.add_argument("--max-minutes", type=float,
                       help="stop the sweep after this many minutes of wall clock (budget.max_minutes; default: "
                            "the config's, 0 in quick.yaml: no limit)")
        p.add_argument("--out", help="folder for run folders (output; default: the config's, runs in quick.yaml)")
        p.add_argument("--name", help="run folder name (default: <config name>-<date>-<time>)")
        p.add_argument("--address", help="join an existing Ray cluster from one of its nodes ('auto' or 'host:port'; "
                                         "default: start a local Ray on 127.0.0.1)")
        p.add_argument("--num-cpus", type=int, help="CPUs for a local Ray (default: all of this machine's)")
        p.add_argument("--trial-memory", type=float, metavar="GB",
                       help="memory budget of each trial (resources.trial_memory_gb; default: automatic)")
        p.add_argument("--gpus-per-trial", type=float, metavar="SHARE",
                       help="train on GPUs: the most of one GPU a trial may get, in (0, 1]; small trials get "
                            "less (resources.gpus_per_trial; default: the config's, 0 in quick.yaml: CPU)")
        p.add_argument("--gpu-memory", type=float, metavar="GB",
                       help="usable memory of each GPU in GiB (resources.gpu_memory_gb; default: nvidia-smi's "
                            "memory.total less memory.reserved on this machine)")
        p.add_argument("--mlflow", metavar="URI",
                       help="also log every trial and the retrained winner to this MLflow tracking URI, e.g. "
                            "sqlite:///mlruns.db or http://127.0.0.1:5000 (tracking.mlflow; needs the [mlflow] extra; "
                            "default: the config's, none in quick.yaml)")
        p.add_argument("--dashboard-host", default="127.0.0.1", metavar="HOST",
                       help="where a local Ray's dashboard listens (default 127.0.0.1, this machine only; "
                            "another address opens it to the network, with a warning)")
        p.add_argument("--warm-start", action="append", metavar="RUN_DIR",
                       help="start from an earlier sweep of the same task (repeatable): its finished trials with "
                            "their results where data and space match, else its best 3 configurations first "
                            "(default: none, a cold start)")
    search.add_argument("--resume", metavar="RUN_DIR",
                        help="go on with a sweep whose driver stopped (Ctrl-C, crash): finished trials are kept, "
                             "running ones continue from their checkpoints; its settings come from RUN_DIR/sweep.yaml "
                             "(default: a new sweep)")
    retrain = sub.add_parser("retrain", help="retrain a run's best trial for longer, keep its best epoch, export it")
    retrain.add_argument("run_dir", help="a run folder made by `lstm-sweep search`")
    for p in (run, retrain):
        p.add_argument("--epochs", type=int, default=10, help="most epochs of the retrain (default 10)")
        p.add_argument("--patience", type=int, default=3, help="epochs without improvement before stopping (default 3)")
        p.add_argument("--dropout", type=float, help="dropout of the retrain (default: the searched value, else 0.2)")
        p.add_argument("--samples-every", type=int,
                       help="every N epochs, continue a fixed prompt from the validation split at each of "
                            "--temperatures, print it and keep it in RUN_DIR/winner/samples.txt; 0: none (default: "
                            "every epoch for a character model, none for a word model)")
        p.add_argument("--temperatures", default="0.2,0.5,1.0,1.2",
                       help="the samples' temperatures, comma-separated, each > 0 (default 0.2,0.5,1.0,1.2)")
    run.add_argument("--prompt", default=SAMPLE_PROMPT, help=f"prompt of the samples (default {SAMPLE_PROMPT!r})")
    run.add_argument("--time", metavar="DURATION",
                     help="one wall-clock budget for the whole job (30m, 1h30m, 90s): the sweep gets 60%% of it, "
                          "the retrain what is left, planned from the winner's seconds an epoch (default: none; "
                          "the sweep's budget and --epochs decide)")

    report = sub.add_parser("report", help="rebuild trials.csv, curves.csv, val_loss.png and report.html of a run")
    report.add_argument("run_dir", help="a run folder made by `lstm-sweep search`")
    export = sub.add_parser("export", help="export a run's retrained winner to RUN_DIR/winner/export/")
    export.add_argument("run_dir", help="a run folder, after `lstm-sweep retrain`")

    generate = sub.add_parser("generate", help="continue a prompt with an exported model")
    generate.add_argument("export_dir", help="an export folder (RUN_DIR/winner/export)")
    generate.add_argument("--prompt", required=True, help='text to continue, e.g. "i love"')
    generate.add_argument("--temperature", type=float, default=0.8, help="0: greedy; higher: more surprising (default 0.8)")
    generate.add_argument("--top-k", type=int, default=40, help="sample among the k likeliest tokens (default 40)")
    generate.add_argument("--max-tokens", type=int,
                          help="most new tokens per line: words, or a character model's characters (default 20; "
                               "a character model: 200)")
    generate.add_argument("--num", type=int, default=3, help="lines to generate (default 3)")
    generate.add_argument("--seed", type=int, help="seed of the sampling (default: random)")
    generate.add_argument("--stop-at", choices=("newline", "limit"),
                          help="newline: a character model's line ends at its first newline; limit: only at "
                               "--max-tokens (default newline; a word model's line ends at <end>)")

    predict = sub.add_parser("predict", help="classify texts with an exported classifier: label and probability each")
    predict.add_argument("export_dir", help="a classifier's export folder (RUN_DIR/winner/export)")
    predict.add_argument("texts", nargs="*", metavar="TEXT", help="texts to classify, one per argument")
    predict.add_argument("--file", help="a UTF-8 file of texts to classify, one per line (blank lines skipped; "
                                         "default: only the TEXT arguments)")

    plan = sub.add_parser("plan", help="print each trial's predicted memory, batch and resources; train nothing")
    plan.add_argument("--config", help=f"sweep YAML (default: the packaged sweeps/{DEFAULT_CONFIG})")
    plan.add_argument("--samples", type=int, default=20,
                      help="configs to show: the whole grid if it is this small, else a sample (default 20)")
    plan.add_argument("--vocab", type=int, help="vocabulary size (default: the config's data.vocab_size cap)")
    plan.add_argument("--trial-memory", type=float, metavar="GB",
                      help="memory budget of each trial (resources.trial_memory_gb; default: automatic)")
    plan.add_argument("--gpu-memory", type=float, metavar="GB",
                      help="memory of each GPU (resources.gpu_memory_gb; default: the config's, else nvidia-smi's)")
    plan.add_argument("--classes", type=int, default=2, help="a classifier's number of classes (default 2)")

    calibrate = sub.add_parser("calibrate", help="measure the memory model's constants on this machine's device "
                                                 "(CPU or first GPU) and store them for plan and sweeps")
    calibrate.add_argument("--quick", action="store_true",
                           help="8 configs, one short epoch each (minutes on a laptop CPU; rougher than the full grid)")
    calibrate.add_argument("--parallel", type=int, default=2, help="configs measured at once, as trials side by "
                                                                    "side (default 2)")
    for name, command in sub.choices.items():
        command.add_argument("--verbose", action="store_true",
                             help="show what the libraries print: TensorFlow's C++ log lines, Ray Tune's tables, "
                                  "the Ray workers' output")
        for action in command._actions:  # argparse has no public list of a parser's arguments
            named = next((o for o in action.option_strings if o.startswith("--")), action.dest)
            if action.metavar is None and named in METAVARS:
                action.metavar = METAVARS[named]
        command.epilog = EXAMPLES.get(name)
        command.formatter_class = argparse.RawDescriptionHelpFormatter  # the examples keep their lines
    return parser


# What each value is, in the help's usage lines (`--samples N`, not `--samples SAMPLES`).
METAVARS = {"--config": "FILE", "--data": "DIR", "--samples": "N", "--max-epochs": "N", "--max-concurrent": "N",
            "--max-minutes": "MINUTES", "--out": "DIR", "--name": "NAME", "--address": "ADDR", "--num-cpus": "N",
            "--epochs": "N", "--patience": "N", "--dropout": "P", "--prompt": "TEXT", "--temperature": "T",
            "--top-k": "K", "--max-tokens": "N", "--num": "N", "--seed": "N", "--file": "FILE", "--vocab": "N",
            "--classes": "N", "--parallel": "N", "--time": "DURATION", "run_dir": "RUN_DIR", "export_dir": "EXPORT_DIR",
            "--samples-every": "N", "--temperatures": "LIST", "--stop-at": "WHERE"}

EXAMPLES = {
    "run": """examples:
  lstm-sweep run                                    # the built-in corpus, sweeps/quick.yaml: minutes on a laptop
  lstm-sweep run --data lyrics/ --samples 24 --max-epochs 4 --epochs 10
  lstm-sweep run --config sweeps/classify.yaml --data reviews.csv   # a classifier: accuracy, predictions
  lstm-sweep run --config sweeps/chars.yaml        # a character model: samples at 4 temperatures every epoch""",
    "search": """examples:
  lstm-sweep search --data lyrics/ --samples 40 --max-minutes 60
  lstm-sweep search --config sweeps/lyrics.yaml --address auto     # on a node of a Ray cluster
  lstm-sweep search --resume runs/quick-20261201-101500            # after Ctrl-C or a crash""",
    "retrain": """examples:
  lstm-sweep retrain runs/quick-20261201-101500
  lstm-sweep retrain runs/quick-20261201-101500 --epochs 20 --patience 5 --dropout 0.3
  lstm-sweep retrain runs/chars-20261201-101500 --samples-every 2 --temperatures 0.5,1.0""",
    "report": """example:
  lstm-sweep report runs/quick-20261201-101500      # then open runs/quick-20261201-101500/report.html""",
    "export": """example:
  lstm-sweep export runs/quick-20261201-101500      # writes runs/quick-20261201-101500/winner/export/""",
    "generate": """examples:
  lstm-sweep generate runs/quick-20261201-101500/winner/export --prompt "i love"
  lstm-sweep generate EXPORT_DIR --prompt "tonight" --temperature 0 --max-tokens 12    # greedy
  lstm-sweep generate runs/chars-20261201-101500/winner/export --prompt "I love" --max-tokens 400 --stop-at limit""",
    "predict": """examples:
  lstm-sweep predict runs/reviews-20261201-101500/winner/export "a fine film" "dull and too long"
  lstm-sweep predict EXPORT_DIR --file reviews.txt""",
    "plan": """examples:
  lstm-sweep plan                                   # the quick sweep on this machine
  lstm-sweep plan --config sweeps/lyrics.yaml --gpu-memory 14.7     # a 16 GB T4""",
    "calibrate": """examples:
  lstm-sweep calibrate --quick                      # minutes; plan and sweeps on this device use it
  lstm-sweep calibrate                              # the full grid, for a GPU a week of sweeps will use""",
}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.verbose:
        return _main(args)
    from lstm_sweep.console import NativeLogFilter, quiet_libraries

    quiet_libraries()
    with NativeLogFilter():  # TensorFlow's C++ lines off stderr, ours and errors kept
        return _main(args)


def _main(args: argparse.Namespace) -> int:
    # Must precede the first `import ray`: a local Ray, and a cluster bound to 127.0.0.1, keep
    # to the loopback address; joining a cluster waits a bounded time (search.cluster).
    prepare_environment(getattr(args, "address", None))
    for name, value in cuda_kernel_cache().items():  # before TensorFlow or Ray start: trials inherit it
        os.environ.setdefault(name, value)
    commands = {"run": _run, "search": _search, "report": _report, "retrain": _retrain, "export": _export,
                "generate": _generate, "predict": _predict, "plan": _plan,
                "calibrate": _calibrate}
    try:
        return commands[args.command](args)
    except UserError as e:
        print(f"lstm-sweep: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"lstm-sweep: {e}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("lstm-sweep: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a full or read-only disk where no command said more
        if not is_disk_error(e):
            raise
        print(f"lstm-sweep: error: cannot write {e.filename or 'a file'} ({e.strerror}): free space there, "
              "or write elsewhere", file=sys.stderr)
        return 2


def cuda_kernel_cache() -> dict[str, str]:
    """Where CUDA keeps the kernels it compiles, and how much of them.

    TensorFlow 2.21's wheel carries no machine code for compute capability 9.0 (H100, H200): CUDA
    compiles its PTX on first use, in every fresh process, which can take many minutes
    (tensorflow/tensorflow#62320). CUDA caches the result in ``CUDA_CACHE_PATH`` (default
    ``~/.nv/ComputeCache``) up to ``CUDA_CACHE_MAXSIZE`` bytes (default 256 MiB, less than
    TensorFlow's kernels take, so they are evicted and compiled again): a folder beside the data
    cache and 4 GiB let the second trial load what the first compiled. A value already set wins.
    """
    from lstm_sweep.data_pipeline.cache import cache_folder

    return {"CUDA_CACHE_PATH": str(cache_folder(None) / "cuda"), "CUDA_CACHE_MAXSIZE": str(4 * 2**30)}


def _run(args: argparse.Namespace) -> int:
    _check_retrain_flags(args)
    resume = getattr(args, "resume", None)
    if not resume:
        _check_prompt(args.prompt, load_config_arg(args.config))  # refused now, not after the sweep and the retrain
    elif (Path(resume) / "sweep.yaml").is_file():  # else the resume says what is missing
        from lstm_sweep.search.config import load_config

        _check_prompt(args.prompt, load_config(Path(resume) / "sweep.yaml"))
    plan = _time_plan(args)
    run_dir = _sweep(args)
    print()
    swept = time.time()
    if plan is not None:
        from lstm_sweep.search.retrain import read_winner
        from lstm_sweep.search.timebudget import clock_text, retrain_epochs

        epochs, left, per_epoch = retrain_epochs(plan, run_dir, read_winner(run_dir).trial_id, args.epochs)
        pace = f" at the winner's pace in its trial ({per_epoch:.0f} s an epoch)" if per_epoch == per_epoch else ""
        print(f"time left for the retrain: {clock_text(left)}: about {epochs} epochs{pace}; it stops after the "
              f"last epoch that ends in time")
    retrained_paths = _retrain_and_export(args, run_dir, deadline=None if plan is None else plan.deadline)
    retrained = time.time()
    from lstm_sweep.results import write_report
    from lstm_sweep.search.config import load_config
    from lstm_sweep.search.tasks import get_task

    export_dir = run_dir / "winner" / "export"
    shown = get_task(load_config(run_dir / "sweep.yaml").task).showcase(run_dir, export_dir, args.prompt)
    kept = run_dir / "winner" / shown.file
    text = "\n".join(shown.lines) + "\n"
    if retrained_paths.get("samples") == kept and kept.is_file():
        # The retrain's samples while training (--samples-every) stay; the exported model's follow them.
        text = kept.read_text(encoding="utf-8") + f"\n{shown.heading}\n" + text
    atomic.write_text(kept, text)
    report = write_report(run_dir)
    print(f"\n{shown.heading}" if shown.heading else "")
    for line in shown.lines:
        print(f"  {line}")
    print(f"\n  report: {report}\n  export: {export_dir}\n{shown.more}")
    if plan is not None:
        from lstm_sweep.search.timebudget import clock_text

        now = time.time()
        print(f"spent {clock_text(now - plan.started)} of {clock_text(plan.total_s)}: start-up and sweep "
              f"{clock_text(swept - plan.started)}, retrain {clock_text(retrained - swept)}, samples and report "
              f"{clock_text(now - retrained)}")
    return 0


def _check_prompt(prompt: str, config) -> None:
    """``run --prompt`` as the winner's generation will take it: words cleaned as the corpus is, or,
    for a character model, the characters (cleaned only if ``data.clean``)."""
    from lstm_sweep.data_pipeline.text import char_prompt_text, prompt_words
    from lstm_sweep.search.config import is_char

    try:
        char_prompt_text(prompt, config.data.clean) if is_char(config) else prompt_words(prompt)
    except UserError as e:
        raise ConfigError(f"--prompt {prompt!r}: {str(e).removeprefix(f'prompt {prompt!r} ')}") from None


def _time_plan(args: argparse.Namespace):
    """``run --time``'s split of the budget (search.timebudget), said before anything runs; it sets
    the sweep's ``--max-minutes``. None without ``--time``."""
    if args.time is None:
        return None
    from lstm_sweep.search.timebudget import parse_duration, plan_time

    if args.max_minutes is not None:
        raise ConfigError(f"--time {args.time} --max-minutes {args.max_minutes:g}: --time sets the sweep's "
                          "minutes itself: drop --max-minutes")
    plan = plan_time(parse_duration(args.time), given=args.time)
    args.max_minutes = plan.sweep_minutes
    print(plan.describe())
    return plan


def _search(args: argparse.Namespace) -> int:
    run_dir = _sweep(args)
    print(f"next: lstm-sweep retrain {run_dir}")
    return 0


class Interrupted(Exception):
    """The sweep was stopped (Ctrl-C, SIGTERM) with its results so far written."""


def _sweep(args: argparse.Namespace) -> Path:
    from lstm_sweep.results import format_leaderboard, trials_table
    from lstm_sweep.search.sweep import resume_sweep, run_sweep

    if (args.address or "").startswith("ray://"):
        # With Ray Client, Ray Tune runs its driver on the head, writing to paths of the head.
        raise ConfigError(f"--address {args.address}: Ray Client is not supported: run lstm-sweep on a node of the "
                          "cluster with --address auto (e.g. ray exec cluster.yaml 'lstm-sweep search ... --address auto')")
    _check_sweep_flags(args)
    where = dict(address=args.address, num_cpus=args.num_cpus, dashboard_host=args.dashboard_host,
                 verbose=args.verbose)
    if getattr(args, "resume", None):
        _refuse_with_resume(args)
        outcome = resume_sweep(args.resume, **where)
    else:
        config = _with_flags(load_config_arg(args.config), {
            "data.path": args.data, "budget.num_samples": args.samples, "budget.max_epochs": args.max_epochs,
            "budget.max_concurrent": args.max_concurrent, "budget.max_minutes": args.max_minutes,
            "output": args.out,
            "resources.trial_memory_gb": args.trial_memory,
            "resources.gpus_per_trial": args.gpus_per_trial, "resources.gpu_memory_gb": args.gpu_memory,
            "tracking.mlflow": args.mlflow,
        })
        _check_output(config.output, f"--out {args.out}" if args.out else f"output: {config.output}")
        outcome = run_sweep(config, name=args.name, warm_start=[Path(p) for p in args.warm_start or ()], **where)
    print()
    print(format_leaderboard(trials_table(outcome.records, metric=outcome.metric, mode=outcome.mode), top=5))
    print()
    _print_paths(outcome.paths)
    if outcome.interrupted:
        raise Interrupted(f"sweep stopped before its end; results so far are in {outcome.run_dir}.\n"
                          f"go on with: lstm-sweep search --resume {outcome.run_dir}")
    return outcome.run_dir


def _refuse_with_resume(args: argparse.Namespace) -> None:
    # A resumed sweep keeps the settings it started with (Ray Tune restores them).
    given = [flag for flag, value in [("--config", args.config), ("--data", args.data), ("--samples", args.samples),
                                      ("--max-epochs", args.max_epochs), ("--max-concurrent", args.max_concurrent),
                                      ("--max-minutes", args.max_minutes),
                                      ("--out", args.out), ("--name", args.name),
                                      ("--trial-memory", args.trial_memory),
                                      ("--gpus-per-trial", args.gpus_per_trial),
                                      ("--gpu-memory", args.gpu_memory),
                                      ("--mlflow", args.mlflow),
                                      ("--warm-start", args.warm_start)] if value is not None]
    if given:
        raise ConfigError(f"--resume {args.resume}: {', '.join(given)} cannot change a sweep that has started; "
                          "drop them (the run's sweep.yaml holds its settings)")


# The config key each flag sets: a bad value is reported under the flag the user typed.
FLAG_OF_KEY = {"data.path": "--data", "budget.num_samples": "--samples", "budget.max_epochs": "--max-epochs",
               "budget.max_concurrent": "--max-concurrent", "budget.max_minutes": "--max-minutes",
               "output": "--out", "resources.trial_memory_gb": "--trial-memory",
               "resources.gpus_per_trial": "--gpus-per-trial", "resources.gpu_memory_gb": "--gpu-memory",
               "tracking.mlflow": "--mlflow"}


def _with_flags(config, overrides: dict):
    """``config`` with the flags' values (``{config key: value}``, None: not given), checked as the
    sweep file is; a bad value is a ConfigError naming the flag: ``--max-epochs -1: must be >= 1
    (budget.max_epochs)``."""
    for key, value in overrides.items():
        if value is None:
            continue
        try:
            config.with_overrides(**{key: value})
        except ConfigError as e:
            flag = FLAG_OF_KEY.get(key, key)
            text = str(e).removeprefix("command line: ")
            if text.startswith(f"{key}: "):
                text = text[len(key) + 2:]
                for shown in (repr(value), str(value)):
                    if text.startswith(f"{shown} "):
                        text = text[len(shown) + 1:]
                        break
                text = f"{text} ({key})"
            raise ConfigError(f"{flag} {value}: {text}") from None
    return config.with_overrides(**overrides)


def _check_sweep_flags(args: argparse.Namespace) -> None:
    """The flags of `search` and `run` that no config key checks, before anything runs."""
    from lstm_sweep.search.config import FOLDER_NAME_RULE, is_folder_name

    if args.num_cpus is not None and args.num_cpus < 1:
        raise ConfigError(f"--num-cpus {args.num_cpus}: must be >= 1 (the CPUs of the local Ray)")
    if args.name is not None and not is_folder_name(args.name):
        raise ConfigError(f"--name {args.name!r}: must be {FOLDER_NAME_RULE}, like the config's name "
                          "(the run folder is made in --out)")
    if args.address:
        check_reachable(args.address)  # a few seconds at most, before the corpus is read


def _check_output(out: str, given: str) -> None:
    """Refuse an output folder that is a file, or on a read-only file system, or not writable,
    before the corpus is read or Ray starts; ``given`` is how the user set it."""
    path = Path(out).expanduser()
    existing = next((p for p in [path, *path.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        what = "is a file" if existing == path else f"cannot be made: {existing} is a file"
        raise RunFolderError(f"{given}: {what}, not a folder: pass --out with a folder (it is made if missing)")
    try:
        read_only = bool(os.statvfs(existing).f_flag & os.ST_RDONLY)
    except OSError:
        read_only = False
    if read_only:
        raise RunFolderError(f"{given}: {existing} is on a read-only file system: pass --out with a folder "
                             "that can be written")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise RunFolderError(f"{given}: cannot write in {existing} (permission denied): pass --out with a "
                             "folder of yours")


def _report(args: argparse.Namespace) -> int:
    from lstm_sweep.search.sweep import rebuild_results

    _print_paths(rebuild_results(args.run_dir).paths)
    return 0


def _retrain(args: argparse.Namespace) -> int:
    _check_retrain_flags(args)
    _retrain_and_export(args, Path(args.run_dir))
    return 0


def _retrain_and_export(args: argparse.Namespace, run_dir: Path, deadline: float | None = None) -> dict[str, Path]:
    from lstm_sweep.results import write_report
    from lstm_sweep.search.retrain import retrain

    paths = retrain(run_dir, epochs=args.epochs, patience=args.patience, dropout=args.dropout, deadline=deadline,
                    samples_every=args.samples_every, temperatures=_temperatures(args.temperatures))
    paths["report"] = write_report(run_dir)
    _print_paths(paths)
    return paths


def _temperatures(text: str) -> tuple[float, ...]:
    """``--temperatures 0.2,0.5,1.0``: numbers > 0, else a one-line error naming the flag."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or not all(v > 0 and v == v and v != float("inf") for v in values):
        raise ConfigError(f"--temperatures {text}: must be numbers > 0 separated by commas, e.g. 0.2,0.5,1.0,1.2")
    return values


def _export(args: argparse.Namespace) -> int:
    from lstm_sweep.search.retrain import export

    print(f"  export: {export(args.run_dir)}")
    return 0


def _generate(args: argparse.Namespace) -> int:
    for line in _samples(Path(args.export_dir), args.prompt, num=args.num, seed=args.seed,
                         temperature=args.temperature, top_k=args.top_k, max_tokens=args.max_tokens,
                         stop_at=args.stop_at):
        print(line)
    return 0


def _predict(args: argparse.Namespace) -> int:
    """One line per text: the likeliest label, its probability, and the text."""
    texts = list(args.texts)
    if args.file:
        try:
            texts += [line for line in Path(args.file).read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"--file {args.file}: cannot read it ({type(e).__name__}: {e})") from None
    if not texts:
        raise ConfigError("predict: no text to classify: give texts as arguments, or --file with one text per line")
    from lstm_sweep.data_pipeline.text import text_words

    for number, text in enumerate(texts, 1):
        text_words(text, number)  # marks alone are no text: refused as `generate` refuses such a prompt
    from lstm_sweep.model.classifier import classify_texts
    from lstm_sweep.model.export import load_classifier_export

    model, vocab, labels, card = load_classifier_export(Path(args.export_dir))
    cut = card["preprocessing"]
    probabilities = classify_texts(model, vocab, texts, cut["seq_len"], cut["padding"], cut["truncating"])
    for text, row in zip(texts, probabilities):
        best = int(row.argmax())
        print(f"{labels[best]}\t{row[best]:.4f}\t{' '.join(text.split())}")
    return 0


def _samples(export_dir: Path, prompt: str, num: int, seed: int | None, temperature: float = 0.8,
             top_k: int = 40, max_tokens: int | None = None, stop_at: str | None = None) -> list[str]:
    for flag, value, ok in [("--temperature", temperature, temperature >= 0), ("--top-k", top_k, top_k >= 1),
                            ("--max-tokens", max_tokens, max_tokens is None or max_tokens >= 1),
                            ("--num", num, num >= 1)]:
        if not ok:
            raise ConfigError(f"{flag} {value}: must be {'>= 0' if flag == '--temperature' else '>= 1'}")
    from lstm_sweep.data_pipeline import CharVocabulary
    from lstm_sweep.model.export import load_export
    from lstm_sweep.model.generation import generate

    model, vocab, _ = load_export(export_dir)
    chars = isinstance(vocab, CharVocabulary)
    if stop_at is not None and not chars:
        raise ConfigError(f"--stop-at {stop_at}: applies to character models only ({export_dir} holds a word "
                          "model, whose lines end at <end>): drop it")
    if max_tokens is None:
        max_tokens = 200 if chars else 20
    return generate(model, vocab, prompt, max_tokens=max_tokens, temperature=temperature, top_k=top_k,
                    num=num, seed=seed, stop_at=stop_at or "newline")


def _plan(args: argparse.Namespace) -> int:
    config = _with_flags(load_config_arg(args.config), {
        "resources.trial_memory_gb": args.trial_memory, "resources.gpu_memory_gb": args.gpu_memory})
    if args.samples < 1:
        raise ConfigError(f"--samples {args.samples}: must be >= 1")
    if args.classes < 2:
        raise ConfigError(f"--classes {args.classes}: must be >= 2")
    if args.vocab is not None and args.vocab < 4:
        raise ConfigError(f"--vocab {args.vocab}: must be >= 4 (the 4 special tokens included), as data.vocab_size")
    from lstm_sweep.search.plan import describe_sizer, plan_table, space_configs
    from lstm_sweep.search.resources import make_sizer, sweep_calibration, this_machine  # loads TensorFlow

    calibration, source = sweep_calibration(config)
    vocab = config.data.vocab_size if args.vocab is None else args.vocab
    sizer = make_sizer(config, vocab, this_machine(), num_classes=args.classes,
                       calibration=calibration)
    chars = getattr(config.data, "tokens", "word") == "char"
    table = plan_table(space_configs(config, args.samples, seed=config.searcher.seed), sizer, windows=chars)
    print(describe_sizer(sizer, "char" if chars else "word"))
    print(table.to_string(index=False))
    counts = table.status.value_counts()
    print(f"{len(table)} configs: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    print(f"memory model: {source}")
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    """Measure the grid here (each config in a fresh trial-like process), fit, store, say where."""
    if args.parallel < 1:
        raise ConfigError(f"--parallel {args.parallel}: must be >= 1")
    from lstm_sweep.model.calibration import calibrate, load_calibration

    path, calibration, rows, seconds = calibrate(quick=args.quick, parallel=args.parallel)
    print()
    for r in rows:
        print(f"  {r['name']:>20}  measured {r['measured_mb']:7.0f} MB  predicted {r['predicted_mb']:7.0f} MB  "
              f"{r['error_pct']:+6.1f}%")
    errors = [r["error_pct"] for r in rows]
    print(f"\n{calibration}\npredictions from {min(errors):+.1f}% to {max(errors):+.1f}% of the measured peaks "
          f"({len(rows)} configs, {seconds:.0f} s)")
    print(f"  wrote: {path}\n  used by plan and sweeps on this device: {load_calibration(path.stem)[1]}")
    return 0


def _check_retrain_flags(args: argparse.Namespace) -> None:
    from lstm_sweep.search.retrain import check_retrain_arguments

    check_retrain_arguments(args.epochs, args.patience, args.dropout, args.samples_every,
                            _temperatures(args.temperatures))


def _print_paths(paths: dict[str, Path]) -> None:
    for key, path in paths.items():
        print(f"{key:>8}: {path}")


def load_config_arg(path: str | None):
    """The config at ``path``, or the packaged default. ``sweeps/NAME.yaml`` that is not here is
    the packaged sweep of that name (quick.yaml, chars.yaml, ...), if there is one: the README's
    commands work from any folder once lstm-sweep is installed."""
    from lstm_sweep.search.config import load_config

    if not path:
        return _packaged_config()
    given = Path(path)
    if not given.exists() and given.parent.name == "sweeps" and len(given.parts) == 2:
        shipped = resources.files("lstm_sweep.sweeps") / given.name
        if shipped.is_file():
            return _packaged_config(given.name)
    return load_config(path)


def _packaged_config(name: str = DEFAULT_CONFIG):
    from lstm_sweep.search.config import load_config

    with resources.as_file(resources.files("lstm_sweep.sweeps") / name) as path:
        return load_config(path)


if __name__ == "__main__":
    sys.exit(main())
