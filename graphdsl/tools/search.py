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
import re
import warnings
from dataclasses import dataclass, field

from graphdsl.errors import DataError
from graphdsl.tools.sweep import LOWER_IS_BETTER, METRICS, Trial, number, show

SEED = 0  # the sampler's: a sweep run one trial at a time proposes the same trials every time
# constant_liar: a trial still running counts as a poor result where it was proposed, so a free
# worker is sent elsewhere rather than to the same point
# Optuna's MedianPruner, judging an epoch only once 5 finished trials have a value for it (the CSV
# keeps no per-epoch values, so a resumed study's finished trials give the pruner nothing)
PRUNER = {"n_startup_trials": 5, "n_min_trials": 5}
REPEATS = 100  # proposals in a row of points already tried, after which a search has run out of points


def optuna_module():
    """Optuna, imported quietly: its experimental-feature warnings are not the user's to act on."""
    try:
        import optuna
    except ModuleNotFoundError:
        raise DataError('--search tpe needs Optuna, here and on every Dask worker: pip install "graphdsl[sweep]"') \
            from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


class Space:
    """The settings a search proposes: each --grid setting one of its values, each --range one a
    number in its range (log-scaled, whole), as Optuna distributions."""

    def __init__(self, grid: dict, ranges: dict):
        distributions = optuna_module().distributions
        self.choices = {name: {show(v): v for v in values} for name, values in grid.items()}
        self.distributions = {name: distributions.CategoricalDistribution(list(c)) for name, c in self.choices.items()}
        for name, r in ranges.items():
            self.distributions[name] = (distributions.IntDistribution(int(r.low), int(r.high), log=r.log)
                                        if r.whole else distributions.FloatDistribution(r.low, r.high, log=r.log))

    @property
    def size(self) -> float:
        """How many points there are: infinite with a range of real numbers."""
        sizes = [len(d.choices) if hasattr(d, "choices") else d.high - d.low + 1 if d.step else math.inf
                 for d in self.distributions.values()]
        return math.prod(sizes)

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
    """What a trial takes to be judged after each epoch: the metric, and the value and per-epoch
    values of each trial finished when it started (plain numbers, so a worker without Optuna
    unpickles it and reports the missing Optuna in the trial's row). Called as `on_epoch`, it stops
    the trial when Optuna's pruner says so."""

    metric: str
    finished: list  # (final value, {epoch: value}), one a finished trial
    curve: dict = field(default_factory=dict)
    pruned: int = 0  # the epoch after which it was pruned
    trial: object = field(default=None, repr=False)  # made where the trial runs, at its first epoch

    def __call__(self, epoch: int, metrics: dict) -> bool:
        if self.metric not in metrics:  # a --grid or --range value that turns validation off
            raise DataError(f"this trial reports no {self.metric}, which the search optimises: hold examples out "
                            "in every trial (validation), or search with --metric loss")
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
        value = self.curve[self.pruned]
        why = "is not a number" if math.isnan(value) else "fell behind the median of the trials finished before it"
        return {"curve": self.curve, "status": "pruned",
                "error": f"pruned after epoch {self.pruned}: its {self.metric} {why}"}


def judge(watch: Watch):
    """A trial of a study holding the finished trials, for Optuna's pruner to judge epoch by epoch."""
    optuna = optuna_module()
    study = optuna.create_study(direction=direction(watch.metric), pruner=optuna.pruners.MedianPruner(**PRUNER),
                                sampler=optuna.samplers.RandomSampler(seed=SEED))
    study.add_trials([optuna.trial.create_trial(value=value, intermediate_values=curve)
                      for value, curve in watch.finished])
    return study.ask()


def direction(metric: str) -> str:
    return "minimize" if metric in LOWER_IS_BETTER else "maximize"


class Search:
    """The study: proposes trials until there are `count` in all, each with the `fixed` settings
    (--set) besides its own, and learns each result. A point tried already is told its result again
    and not run twice."""

    def __init__(self, space: Space, fixed: dict, metric: str, count: int, prune: bool, rows: list, where: str):
        optuna = optuna_module()
        self.space, self.fixed, self.metric, self.count, self.prune = space, fixed, metric, count, prune
        # seeded past the rows: a resumed search's random first proposals are not the first run's again
        self.study = optuna.create_study(direction=direction(metric), sampler=optuna.samplers.TPESampler(
            seed=SEED + len(rows), constant_liar=True))
        self.known, self.asked = {}, {}  # trial id: (state, value) once finished, None while it runs
        for i, row in enumerate(rows):
            self.resumed(row, f"{where} row {i + 2}")
        self.ran, self.left = len(rows), max(0, count - len(rows))

    def trial(self, params: dict) -> Trial:
        return Trial({**self.fixed, **self.space.settings(params)}, 0)

    def resumed(self, row: dict, where: str) -> None:
        """A results row, told to the study as a finished trial."""
        from optuna.trial import TrialState, create_trial

        params, value = self.space.params(row, where), number(row.get(self.metric))
        if self.trial(params).id != row["trial"]:
            raise DataError(f"{where} is a trial of other settings (another --set, or seed {row['seed']}): resume "
                            "with the --set values it ran with, or write to a new --out")
        stopped = re.match(r"pruned after epoch (\d+)", row["error"])
        if row["status"] == "ok" and math.isfinite(value):
            state, curve = TrialState.COMPLETE, {}
        elif stopped and math.isfinite(value):
            state, curve = TrialState.PRUNED, {int(stopped.group(1)): value}
        else:
            state, curve = TrialState.FAIL, {}
        self.study.add_trial(create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                                          params=params, distributions=self.space.distributions,
                                          intermediate_values=curve))
        self.known[row["trial"]] = (state, value)

    def proposals(self):
        """(Trial, Watch or None) pairs, one a trial still to run, each asked for once the one before
        is out, until there are `count` or the proposals keep repeating points already tried."""
        from optuna.trial import TrialState

        repeats = 0
        while self.ran < self.count and len(self.known) < self.space.size and repeats < REPEATS:
            asked = self.study.ask(self.space.distributions)
            trial = self.trial(asked.params)
            if trial.id in self.known:
                state, value = self.known[trial.id] or (TrialState.FAIL, None)  # still running: no result yet
                self.study.tell(asked, value if state == TrialState.COMPLETE else None,
                                state=None if state == TrialState.COMPLETE else state)
                repeats += 1
                continue
            repeats, self.ran, self.known[trial.id], self.asked[trial.id] = 0, self.ran + 1, None, asked
            finished = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            yield trial, Watch(self.metric, [(t.value, t.intermediate_values) for t in finished
                                             if t.intermediate_values]) if self.prune else None

    def tell(self, trial: Trial, result: dict) -> None:
        from optuna.trial import TrialState

        asked = self.asked.pop(trial.id)
        for epoch, value in result.get("curve", {}).items():
            asked.report(value, epoch)
        value = result.get(self.metric, math.nan)
        if result["status"] == "ok" and math.isfinite(value):
            state = TrialState.COMPLETE
            self.study.tell(asked, value)
        else:
            state = TrialState.PRUNED if result["status"] == "pruned" else TrialState.FAIL
            self.study.tell(asked, state=state)
        self.known[trial.id] = (state, value)


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


def plan(grid: dict, ranges: dict, random: int, seeds: int, trials: int | None) -> Space:
    """The space --search tpe searches, once what it refuses is refused, before anything runs."""
    if trials is None:
        raise DataError("--search tpe needs --trials N, the number of trials it proposes")
    if random:
        raise DataError("--random N draws points for a grid search; with --search tpe, give --trials N")
    if seeds != 1:
        raise DataError("--search tpe trains each point it proposes once, with seed 0: leave out --seeds")
    if not grid and not ranges:
        raise DataError("--search tpe needs something to search: a --range NAME=LOW:HIGH, or a --grid")
    space = Space(grid, ranges)
    if trials > space.size:
        raise DataError(f"the --grid and --range values hold {space.size} points, fewer than --trials {trials}: "
                        "ask for fewer, or run every point with --search grid")
    return space
