"""Searching a sweep's settings with Optuna: its TPE sampler proposes each trial's settings from
the results of the trials before it, and its median pruner stops a trial whose per-epoch metric
falls behind theirs.

The study lives in the process running the sweep (Optuna's ask and tell). A trial runs wherever
the sweep runs trials, here or on a Dask worker, and takes a snapshot of the trials finished so
far with it: after each epoch Optuna's pruner judges the trial against that snapshot, so a worker
needs no connection back. Resuming rebuilds the study from the results CSV, each finished row told
again; the CSV keeps no per-epoch values, so the pruner learns those afresh from the trials it runs.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from graphdsl.errors import DataError
from graphdsl.tools.sweep import LOWER_IS_BETTER, METRICS, Trial, number, show

SEED = 0  # the sampler's: a sweep run one trial at a time proposes the same trials every time
# constant_liar: a trial still running counts as a poor result where it was proposed, so a free
# worker is sent elsewhere rather than to the same point


def optuna_module():
    """Optuna, imported quietly: its experimental-feature warnings are not the user's to act on."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise DataError('--search tpe needs Optuna: pip install "graphdsl[sweep]"') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


class Space:
    """The settings a search proposes: each --grid setting one of its values, each --range one a
    number in its range (log-scaled, whole), as Optuna distributions."""

    def __init__(self, grid: dict, ranges: dict):
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        self.choices = {name: {show(v): v for v in values} for name, values in grid.items()}
        self.distributions = {name: CategoricalDistribution(list(c)) for name, c in self.choices.items()}
        for name, r in ranges.items():
            self.distributions[name] = (IntDistribution(math.ceil(r.low), math.floor(r.high), log=r.log)
                                        if r.whole else FloatDistribution(r.low, r.high, log=r.log))

    def settings(self, params: dict) -> dict:
        """A trial's settings as the sweep passes them on: a grid value as given, a number as (x,)."""
        return {name: self.choices[name][v] if name in self.choices else (float(v),) for name, v in params.items()}

    def params(self, row: dict, where: str) -> dict:
        """The Optuna params of a results row, which must lie in this space."""
        params = {}
        for name, distribution in self.distributions.items():
            text = row[name]
            if name in self.choices:
                value, inside = text, text in self.choices[name]
            else:
                value = number(text)
                inside = distribution.low <= value <= distribution.high  # never for nan
                if inside and distribution.step is not None:  # an IntDistribution's
                    value, inside = int(value), value == int(value)
            if not inside:
                raise DataError(f"{where} has {name}={text}, which this search does not offer: resume with the "
                                "same --grid values and --range bounds, or write to a new --out")
            params[name] = value
        return params


@dataclass
class Watch:
    """What a trial takes to be judged after each epoch: the metric, the pruner and the trials
    finished when it started. Called as `on_epoch`, it stops the trial when the pruner says so."""

    metric: str
    pruner: object
    finished: list
    curve: dict = field(default_factory=dict)
    pruned: int = 0  # the epoch after which it was pruned
    trial: object = field(default=None, repr=False)  # made where the trial runs, at its first epoch

    def __call__(self, epoch: int, metrics: dict) -> bool:
        if self.trial is None:
            self.trial = judge(self)
        value = metrics[self.metric]
        self.curve[epoch] = value
        self.trial.report(value, epoch)
        if self.trial.should_prune():
            self.pruned = epoch
        return bool(self.pruned)

    def outcome(self) -> dict:
        """What the trial's result adds: its per-epoch values and, if pruned, where."""
        if not self.pruned:
            return {"curve": self.curve}
        return {"curve": self.curve, "status": "pruned",
                "error": f"pruned after epoch {self.pruned}: its {self.metric} fell behind the median of the "
                         f"trials finished before it"}


def judge(watch: Watch):
    """A trial of a study holding the finished trials, for the pruner to judge epoch by epoch."""
    optuna = optuna_module()
    study = optuna.create_study(direction=direction(watch.metric), pruner=watch.pruner,
                                sampler=optuna.samplers.RandomSampler(seed=SEED))
    study.add_trials(watch.finished)
    return study.ask()


def direction(metric: str) -> str:
    return "minimize" if metric in LOWER_IS_BETTER else "maximize"


class Search:
    """The study: proposes trials until there are `count` in all, each with the `fixed` settings
    (--set) besides its own, and learns each result."""

    def __init__(self, space: Space, fixed: dict, metric: str, count: int, prune: bool, rows: list, where: str):
        optuna = optuna_module()
        self.space, self.fixed, self.metric, self.count = space, fixed, metric, count
        self.pruner = optuna.pruners.MedianPruner() if prune else optuna.pruners.NopPruner()
        self.study = optuna.create_study(direction=direction(metric), pruner=self.pruner,
                                         sampler=optuna.samplers.TPESampler(seed=SEED, constant_liar=True))
        for i, row in enumerate(rows):
            self.study.add_trial(self.told(row, f"{where} row {i + 2}"))
        self.asked, self.left = {}, max(0, count - len(rows))

    def told(self, row: dict, where: str):
        """A results row as a finished trial of the study."""
        from optuna.trial import TrialState, create_trial

        params, value = self.space.params(row, where), number(row.get(self.metric))
        if row["status"] == "ok" and math.isfinite(value):
            return create_trial(value=value, params=params, distributions=self.space.distributions)
        state = TrialState.PRUNED if row["status"] == "pruned" else TrialState.FAIL
        return create_trial(state=state, params=params, distributions=self.space.distributions)

    def proposals(self):
        """(Trial, Watch) pairs, one a trial still to run, each asked for once the one before is out."""
        from optuna.trial import TrialState

        while len(self.study.trials) < self.count:
            asked = self.study.ask(self.space.distributions)
            trial = Trial({**self.fixed, **self.space.settings(asked.params)}, 0)
            done = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            self.asked[id(trial)] = asked  # by identity: a point proposed twice is two trials
            yield trial, Watch(self.metric, self.pruner, list(done))

    def tell(self, trial: Trial, result: dict) -> None:
        from optuna.trial import TrialState

        asked = self.asked.pop(id(trial))
        for epoch, value in result.get("curve", {}).items():
            asked.report(value, epoch)
        value = result.get(self.metric, math.nan)
        if result["status"] == "pruned":
            self.study.tell(asked, state=TrialState.PRUNED)
        elif result["status"] == "ok" and math.isfinite(value):
            self.study.tell(asked, value)
        else:
            self.study.tell(asked, state=TrialState.FAIL)


def objective(train, metric: str | None) -> str:
    """The metric a search optimises: `metric`, else val_loss where examples are held out, else loss."""
    validated = bool(train.options["validation"])
    if metric is None:
        return "val_loss" if validated else "loss"
    if metric not in METRICS:
        raise DataError(f"--metric is one of {', '.join(METRICS)}, not `{metric}`")
    if metric.startswith("val_") and not validated:
        raise DataError(f"--metric {metric} needs examples held out: --set validation=0.2, or validation= "
                        "in the spec's `minimize`")
    if metric.endswith("accuracy") and not train.metric:
        raise DataError(f"--metric {metric}: `{train.loss}` is not a classifier's loss, so training reports "
                        "no accuracy")
    return metric


def check(grid: dict, ranges: dict, random: int, seeds: int, trials: int | None) -> None:
    """What --search tpe refuses, before anything runs."""
    if trials is None:
        raise DataError("--search tpe needs --trials N, the number of trials it proposes")
    if random:
        raise DataError("--random N draws points for a grid search; with --search tpe, give --trials N")
    if seeds != 1:
        raise DataError("--search tpe trains each point it proposes once, with seed 0: leave out --seeds")
    if not grid and not ranges:
        raise DataError("--search tpe needs something to search: a --range NAME=LOW:HIGH, or a --grid")
    for name, r in ranges.items():
        if r.whole and math.ceil(r.low) > math.floor(r.high):
            raise DataError(f"--range {name} holds no whole number")

