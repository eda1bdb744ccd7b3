"""``lstm-sweep plan``: what each trial of a sweep would get, without training anything.

For the configs a search space can produce — all of them when it is a small grid, else a
seeded sample plus its largest corner (every size at its maximum, the trial most likely
not to fit) — print the predicted peak, the batch that fits, and the resources Ray would
reserve.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from lstm_sweep.errors import ConfigError
from lstm_sweep.search.config import Param, SweepConfig
from lstm_sweep.search.resources import MiB, GiB, TrialSizer

SIZE_PARAMETERS = ("embedding_size", "hidden_size", "num_layers", "batch_size", "vocab_size", "seq_len",
                   "bidirectional")  # max() of bidirectional: True, the bigger model


def space_configs(config: SweepConfig, samples: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Configs of ``config.space``: the whole grid if it has at most ``samples`` points and
    no continuous range; otherwise the largest corner and ``samples - 1`` seeded draws.

    Example:
        >>> cfg = parse_config({"space": {"hidden_size": {"choice": [64, 2048]}}})  # doctest: +SKIP
        >>> [c["hidden_size"] for c in space_configs(cfg)]  # doctest: +SKIP
        [64, 2048]
    """
    if samples < 1:
        raise ValueError(f"samples={samples} must be >= 1")
    space = config.space
    grid = {name: _grid(p) for name, p in space.items()}
    if all(v is not None for v in grid.values()) and math.prod(len(v) for v in grid.values()) <= samples:
        return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    rng = np.random.default_rng(seed)
    corner = {name: (max(p.args) if name in SIZE_PARAMETERS else _draw(p, rng)) for name, p in space.items()}
    draws = [{name: _draw(p, rng) for name, p in space.items()} for _ in range(samples - 1)]
    return [corner, *draws]


def plan_table(configs: list[dict[str, Any]], sizer: TrialSizer, windows: bool = False) -> pd.DataFrame:
    """One row per config: its sizes, the batch it would use, predicted MB and resources;
    ``windows``: character trials, each with its window's ``seq`` (characters, ``T``)."""
    rows = []
    for config in configs:
        plan, spec = sizer.plan(config), sizer.spec(config)
        classifier = {"cell": spec.cell, "bidir": spec.bidirectional, "seq": spec.seq_len} \
            if spec.is_classifier else {"seq": spec.seq_len} if windows else {}
        rows.append({
            **classifier, "emb": spec.embedding_size, "hidden": spec.hidden_size, "layers": spec.num_layers,
            "vocab": spec.vocab_size, "batch": plan.batch_size_requested,
            "batch_used": plan.batch_size_used, "peak_mb": round(plan.predicted_peak_bytes / MiB),
            "budget_mb": round(plan.budget_bytes / MiB), "cpu": plan.cpu, "gpu": plan.gpu,
            "memory_gb": round(plan.memory_bytes / GiB, 2),
            "status": "ok" if plan.feasible and plan.batch_size_used == plan.batch_size_requested
            else "batch cut" if plan.feasible else "infeasible",
        })
    return pd.DataFrame(rows)


def describe_sizer(sizer: TrialSizer, tokens: str = "word") -> str:
    """One line saying what budget the plan assumed (``tokens="char"``: character windows)."""
    if sizer.on_gpu:
        what = (f"GPU trials: up to {sizer.gpus_per_trial:g} of a GPU with {sizer.gpu_memory_bytes / GiB:.1f} GiB "
                f"usable each, shares rounded up to 1/{sizer.gpu_share_grid}, "
                f"{sizer.gpu_process_reserve_bytes / MiB:,.0f} MB of each share for the process's CUDA context")
    else:
        what = f"CPU trials: {(sizer.trial_memory_bytes or sizer.host_budget_bytes) / GiB:.1f} GiB each"
    steps = (f"a classifier of {sizer.num_classes} classes" if sizer.num_classes
             else f"character windows of up to {sizer.seq_len} steps" if tokens == "char"
             else f"sentences of {sizer.seq_len} steps")
    return (f"{what}; {sizer.cpus_per_trial:g} CPU each, {steps}; "
            f"batches planned within {1 - sizer.headroom:.0%} of a budget (headroom for the memory model's error)")


def _grid(param: Param) -> list | None:
    if param.kind in ("fixed", "choice"):
        return list(param.args)
    if param.kind == "int" and param.args[1] - param.args[0] < 16:
        return list(range(int(param.args[0]), int(param.args[1]) + 1))
    return None


def _draw(param: Param, rng: np.random.Generator) -> Any:
    low, high = param.args[0], param.args[-1]
    if param.kind == "fixed":
        return low
    if param.kind == "choice":
        return param.args[int(rng.integers(len(param.args)))]
    if param.kind == "int":
        return int(rng.integers(low, high + 1))
    if param.kind == "logint":
        return int(min(high, math.floor(math.exp(rng.uniform(math.log(low), math.log(high + 1))))))
    if param.kind == "uniform":
        return float(rng.uniform(low, high))
    return float(math.exp(rng.uniform(math.log(low), math.log(high))))


def smallest_configs(config: SweepConfig) -> list[dict[str, Any]]:
    """The configs of the space that need the least memory: every size (:data:`SIZE_PARAMETERS`)
    and every number at its lowest, with each combination of the categorical values (the cell,
    the padding sides), whose memory differs. If none of them fits, no config of the space does.

    Example:
        >>> cfg = parse_config({"space": {"hidden_size": {"logint": [32, 2048]}}})  # doctest: +SKIP
        >>> [c["hidden_size"] for c in smallest_configs(cfg)]  # doctest: +SKIP
        [32]
    """
    fixed, categorical = {}, {}
    for name, param in config.space.items():
        numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in param.args)
        if name in SIZE_PARAMETERS or numeric:
            fixed[name] = min(param.args)
        else:
            categorical[name] = list(dict.fromkeys(param.args))
    return [{**fixed, **dict(zip(categorical, values))} for values in itertools.product(*categorical.values())]


def check_feasible(config: SweepConfig, sizer: TrialSizer, where: str = "") -> None:
    """Refuse a sweep whose every config is infeasible: even its smallest (:func:`smallest_configs`)
    does not fit its budget at ``resources.min_batch_size``, so every trial would end unrun.

    Raises:
        ConfigError: naming the smallest config's need and the budget, and what to change.
    """
    plans = [(sizer.plan(c), c) for c in smallest_configs(config)]
    if any(plan.feasible for plan, _ in plans):
        return
    plan, smallest = min(plans, key=lambda pc: pc[0].need_bytes)
    sizes = ", ".join(f"{k} {v}" for k, v in smallest.items() if k in SIZE_PARAMETERS and k != "batch_size")
    knob = ("--trial-memory (resources.trial_memory_gb)" if sizer.trial_memory_bytes
            else "--gpus-per-trial or --gpu-memory" if sizer.on_gpu else "--trial-memory, or run on a larger machine")
    raise ConfigError(f"every config of the space is infeasible{where}: the smallest ({sizes}) needs "
                      f"{plan.need_bytes / MiB:,.0f} MB at batch {min(sizer.min_batch_size, plan.batch_size_requested)} "
                      f"against a budget of {max(plan.budget_bytes, 0) / MiB:,.0f} MB per trial: raise {knob}, "
                      "or shrink the space (`lstm-sweep plan` shows each config)")
