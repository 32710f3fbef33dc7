"""Sweeps: many trainings of one spec, one a trial, serially or on a Dask cluster.

A trial is plain data, its settings and a seed. Whoever runs it (this process or a Dask
worker) compiles the spec text itself with `graphdsl.compile`: generated modules are cached
on disk under a content hash and kept in the process once imported, so a worker compiles a
graph at most once however many trials of it it runs, and never receives compiled code.

Results go to a CSV, one row a trial, each row written and flushed as its trial finishes,
so a killed sweep keeps every finished row and `resume` skips the trials that have one. A trial
that fails, however (a bad setting, a bug in graphdsl, a worker that died), is a row of its own
with status `error`: the sweep goes on.
"""
from __future__ import annotations

import csv
import hashlib
import importlib.util
import io
import itertools
import json
import logging
import math
import os
import re
import time
import warnings
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphdsl.training.data import number_text
from graphdsl.errors import DataError, SpecError, WriteError
from graphdsl.frontend.expand import parse_override
from graphdsl.training.records import quoted_line

METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")
LOWER_IS_BETTER = ("loss", "val_loss")
RESULTS = [c for m in METRICS for c in (m, f"best_{m}")] + ["status", "error", "seconds"]


# -- what to sweep ------------------------------------------------------------

def parse_values(text: str) -> list:
    """`0.01,0.1`, `sgd,adam` or `[16],[64,32]`: values separated by commas, where a bracketed
    list is one value of a list setting (`16` alone is the one-entry list [16]); `[]` is empty."""
    values = []
    for item in re.findall(r"\[[^\]]*\]|[^,]+", text):
        item = item.strip()
        bracketed = item.startswith("[") and item.endswith("]")
        value = parse_override(item[1:-1] if bracketed else item)
        if isinstance(value, str) and (bracketed or "[" in value or "]" in value):
            raise DataError(f"`{item}` is not a value: write numbers, a word, or a list like [64,32]")
        if value != "":
            values.append(value)
    if not values:
        raise DataError(f"`{text}` gives no values")
    return values


@dataclass(frozen=True)
class Range:
    """Where random search draws a setting from: uniform, or log-uniform, optionally rounded."""

    low: float
    high: float
    log: bool = False
    whole: bool = False

    @classmethod
    def parse(cls, text: str) -> "Range":
        """`LOW:HIGH`, then optionally `:log` (log-uniform) and `:int` (whole numbers LOW to HIGH)."""
        low, _, rest = text.partition(":")
        high, _, flags = rest.partition(":")
        flags = set(flags.split(":")) - {""}
        try:
            low, high = float(low), float(high)
        except ValueError:
            raise DataError(f"`{text}` is not LOW:HIGH[:log][:int], as in 0.001:0.1:log") from None
        if (flags - {"log", "int"} or not low < high or ("log" in flags and low <= 0)
                or not math.isfinite(high - low)):
            raise DataError(f"`{text}` is not LOW:HIGH[:log][:int] with finite LOW < HIGH (and LOW > 0 for log)")
        if "int" in flags and not (low.is_integer() and high.is_integer()):
            raise DataError(f"`{text}`: an `:int` range runs between whole numbers, as in 8:64:int")
        return cls(low, high, "log" in flags, "int" in flags)

    def draw(self, rng) -> tuple:
        """A number in the range; with `:int`, a whole number LOW..HIGH drawn as Optuna draws one:
        from the range widened by half a unit each way, rounded, so the ends are as likely as the rest."""
        low, high = (self.low - 0.5, self.high + 0.5) if self.whole else (self.low, self.high)
        x = math.exp(rng.uniform(math.log(low), math.log(high))) if self.log else rng.uniform(low, high)
        return (float(min(max(math.floor(x + 0.5), self.low), self.high)) if self.whole else float(x),)


@dataclass(frozen=True)
class Trial:
    settings: dict   # every --set and swept value by name: a tuple of numbers, or a word
    seed: int        # the param initialisation seed and `minimize`'s seed (shuffles, validation split)

    @property
    def id(self) -> str:
        """A hash of the settings and the seed, so the same trial has the same id in every run."""
        key = json.dumps([sorted(self.settings.items()), self.seed])
        return hashlib.sha256(key.encode()).hexdigest()[:12]


def check_names(fixed: dict, grid: dict, ranges: dict) -> None:
    """Each setting given once among --set, --grid and --range, and none of them the seed."""
    if "seed" in {*fixed, *grid, *ranges}:
        raise DataError("a trial's seed comes from --seeds N (seeds 0 to N-1), not from a setting")
    clash = (set(fixed) & set(grid)) | (set(fixed) & set(ranges)) | (set(grid) & set(ranges))
    if clash:
        raise DataError(f"`{sorted(clash)[0]}` is given more than once among --set, --grid and --range")


def plan(fixed: dict, grid: dict, ranges: dict, random: int, seeds: int) -> list[Trial]:
    """Every grid point, crossed with `random` points drawn from the ranges, crossed with the seeds.

    The draws come from a fixed seed, so a sweep can be resumed, and the first N points of
    `random=2N` are the points of `random=N`.
    """
    check_names(fixed, grid, ranges)
    if bool(random) != bool(ranges):
        raise DataError("random search needs both --random N and at least one --range")
    if seeds < 1:
        raise DataError("--seeds must be at least 1")
    rng = np.random.default_rng(0)
    drawn = [{name: r.draw(rng) for name, r in ranges.items()} for _ in range(random)] or [{}]
    points = [{**dict(zip(grid, combo)), **d} for d in drawn for combo in itertools.product(*grid.values())]
    trials = [Trial({**fixed, **p}, s) for p in points for s in range(seeds)]
    return list({t.id: t for t in trials}.values())  # a value repeated in --grid runs once


# -- one trial ----------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    """What every trial shares: the spec's text, its file name and the data to train on."""

    text: str
    filename: str = "<spec>"
    data: str | tuple | None = None  # a built-in name, or absolute paths


def run_trial(job: Job, trial: Trial, watch=None) -> dict:
    """Compile and train one trial; its metrics, status, error message and wall time. A `watch`
    (search.Watch) sees each epoch's metrics and may stop the trial: its outcome joins the result.

    A bad setting or a non-finite loss fails this trial only, and so does a bug in graphdsl that
    one trial meets: the other trials, and the rows they wrote, are worth keeping."""
    import graphdsl
    from graphdsl.training.trainer import TrainingError

    began = time.perf_counter()
    try:
        with warnings.catch_warnings():  # the command printed the spec's warnings once, before any trial
            warnings.simplefilter("ignore", graphdsl.SpecWarning)
            model = graphdsl.compile(job.text, filename=job.filename, seed=trial.seed,
                                     settings={**trial.settings, "seed": trial.seed})
        result = {**final_metrics(model.train(job.data, on_epoch=watch)), "status": "ok", "error": ""}
        if watch is not None:
            result.update(watch.outcome())
    except (TrainingError, DataError, SpecError) as err:
        result = {"status": "error", "error": str(err)}
    except Exception as err:  # a bug: reported as the command line reports one, in this trial's row
        result = {"status": "error", "error": f"internal error ({type(err).__name__}: {err}); this is a bug "
                                              "in graphdsl, please report it with the spec and settings"}
    return {**result, "seconds": time.perf_counter() - began}


def final_metrics(history) -> dict:
    """Each metric's last epoch and its best epoch (lowest loss, highest accuracy)."""
    out = {}
    for name in METRICS:
        if name in history.history:
            values = np.asarray(history[name], dtype=np.float64)
            best = np.nanmin if name in LOWER_IS_BETTER else np.nanmax
            out[name], out[f"best_{name}"] = float(values[-1]), float(best(values))
    return out


# -- the results file -----------------------------------------------------------

def show(value) -> str:
    """A value as the CSV writes it: a number, a word, or a list like [64,32]."""
    if isinstance(value, str):
        return value
    if isinstance(value, tuple):
        text = ",".join(show(v) for v in value)
        return text if len(value) == 1 else f"[{text}]"
    return number_text(value)


def one_line(message: str) -> str:
    """An error message on one line, for a results row: its lines joined, the caret lines that
    underline the spec's text dropped. A row of one line is whole or visibly torn, never cut inside a cell."""
    lines = [line.strip() for line in message.splitlines()]
    return " | ".join(line for line in lines if line.strip("^~ "))


def row_of(trial: Trial, swept: list, result: dict) -> dict:
    row = {"trial": trial.id, "seed": trial.seed, **{k: show(trial.settings[k]) for k in swept}}
    row.update({k: show(v) if isinstance(v, float) else v for k, v in result.items() if k != "seconds"})
    row["error"] = one_line(row.get("error", ""))
    row["seconds"] = f"{result['seconds']:.3f}"
    return row


class Results:
    """The results CSV: a header, then one row a trial, each written in one write and flushed."""

    def __init__(self, path, swept: list, resume: bool):
        self.path, self.columns = Path(path), ["trial", "seed", *swept, *RESULTS]
        self.rows = self.read() if resume and self.path.exists() else []
        try:
            self.file = open(self.path, "a" if self.rows else "w", encoding="utf-8", newline="")
        except OSError as err:
            raise DataError(f"cannot write {path}: {err.strerror or err}") from None
        if not self.rows:
            self.write(dict(zip(self.columns, self.columns)))

    def read(self) -> list[dict]:
        text = self.path.read_bytes().decode("utf-8", "surrogateescape")  # byte for byte, whatever a kill cut
        whole = text[:whole_records(text)]
        reader = csv.DictReader(io.StringIO(whole, newline=""))
        rows = list(reader)
        if text and reader.fieldnames != self.columns:  # a sweep writes its header line whole, first
            found = (f"has the columns {', '.join(reader.fieldnames)}" if reader.fieldnames else
                     "has no whole line, so no sweep's header")
            raise DataError(f"{self.path} {found}, but this sweep writes {', '.join(self.columns)}: resume "
                            "with the same --grid and --range names, or write to a new --out")
        # only once it is known to be this sweep's: a trial whose row was cut short runs again
        os.truncate(self.path, len(whole.encode("utf-8", "surrogateescape")))
        return rows

    @property
    def done(self) -> set:
        return {row["trial"] for row in self.rows}

    def write(self, row: dict) -> None:
        try:
            self.file.write(quoted_line([row.get(c, "") for c in self.columns]))  # one quoted CSV line
            self.file.flush()
        except OSError as err:  # the disk full: the rows before are whole, and a resume runs the rest
            raise WriteError(f"cannot write {self.path}: {err.strerror or err}; its finished rows are kept, "
                             "and --resume runs the trials it lacks") from None

    def append(self, row: dict) -> None:
        self.write(row)
        self.rows.append({c: str(row.get(c, "")) for c in self.columns})

    def close(self) -> None:
        self.file.close()


def whole_records(text: str) -> int:
    """The length of `text` up to the end of its last whole CSV record: a newline outside quotes
    (a quoted cell may hold one; its quotes come in pairs, "" standing for one)."""
    end, inside = 0, False
    for found in re.finditer(r'["\n]', text):
        if found.group() == '"':
            inside = not inside
        elif not inside:
            end = found.end()
    return end


# -- running the trials -----------------------------------------------------------

def dask_available() -> bool:
    return importlib.util.find_spec("distributed") is not None


def scheduler_address(address: str | None) -> str | None:
    """--address, else Dask's own setting (the DASK_SCHEDULER_ADDRESS variable or its config)."""
    if address or not dask_available():
        return address
    import dask
    return dask.config.get("scheduler-address", None)


def local_cluster(workers: int):
    """Worker processes of one thread on this machine, listening on loopback only. With no
    dashboard the scheduler still serves /health over HTTP: on a free port, not 8787.
    Dask's warnings (such as a worker slow to exit at shutdown) are not the user's to act on."""
    from dask.distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                        silence_logs=logging.ERROR)


def execute(job: Job, work, done, address: str | None = None, workers: int | None = None,
            count: int = 1, lazy: bool = False) -> None:
    """Run each (trial, watch) of the iterator `work` (`count` of them), calling done(trial, result)
    as each finishes: in this process when workers == 1 (or Dask is missing), else on the cluster
    at `address` or a local one. `lazy`: take the next one only once a worker is free, so that a
    search proposes each trial knowing every result before it."""
    address = scheduler_address(address)
    if address is None and (workers == 1 or not dask_available()):
        for trial, watch in work:
            done(trial, run_trial(job, trial, watch))
        return
    from dask.distributed import Client, as_completed

    with ExitStack() as stack:
        if address is None:
            address = stack.enter_context(local_cluster(min(workers or os.cpu_count() or 1, count)))
        try:
            client = stack.enter_context(Client(address))
        except (ValueError, OSError) as err:  # a malformed address, or no scheduler there
            raise DataError(f"cannot reach the Dask scheduler at {address}: {err}") from None
        futures = {}

        def submit(item):
            # pure=False: random task keys, so another sweep on a shared cluster never shares results
            future = client.submit(run_trial, job, *item, pure=False)
            futures[future] = item[0]
            return future

        def top_up():  # lazily, as many running as the cluster has threads now (workers come and go)
            ahead = max(1, sum(client.nthreads().values())) - len(futures) if lazy else count
            return [submit(item) for item in itertools.islice(work, max(ahead, 0))]

        running = as_completed(top_up())
        for future in running:
            try:
                result = future.result()
            except Exception as err:  # the worker died (killed, out of memory) or the cluster lost the task
                result = {"status": "error", "error": f"the trial's worker failed ({type(err).__name__}: {err})",
                          "seconds": math.nan}
            done(futures.pop(future), result)
            for new in top_up() if lazy else ():
                running.add(new)


def run_sweep(job: Job, trials: list | None, swept: list, out, *, resume: bool = False, address: str | None = None,
              workers: int | None = None, report=None, search=None) -> list[dict]:
    """Run the trials that have no row in `out` yet, or with `search` (a function of the rows already
    in `out`, giving a search.Search) the trials the search proposes; every row of `out` afterwards.
    report(row, finished, total) is called as each trial finishes."""
    results = Results(out, swept, resume)
    try:
        if search is None:
            work = [(t, None) for t in trials if t.id not in results.done]
            count, work, tell = len(work), iter(work), None
        else:
            searching = search(results.rows)
            count, work, tell = searching.left, searching.proposals(), searching.tell
        finished = 0

        def done(trial, result):
            nonlocal finished
            row = row_of(trial, swept, result)
            results.append(row)
            if tell:
                tell(trial, result)
            finished += 1
            if report:
                report(row, finished, count)

        if count:
            execute(job, work, done, address, workers, count, lazy=tell is not None)
    finally:
        results.close()
    return results.rows


# -- what the sweep found --------------------------------------------------------------

def number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def ranking_metric(rows: list) -> str:
    """val_loss when any finished trial has it, else loss."""
    ok = [r for r in rows if r["status"] == "ok"]
    return "val_loss" if any(math.isfinite(number(r["val_loss"])) for r in ok) else "loss"


def best(rows: list, metric: str | None = None) -> tuple[str, dict | None]:
    """(the ranking metric, by default ranking_metric's, and the finished trial whose last epoch has
    the best value of it, the lowest loss or highest accuracy, or None)."""
    metric = metric or ranking_metric(rows)
    ok = [r for r in rows if r["status"] == "ok" and math.isfinite(number(r[metric]))]
    sign = 1 if metric in LOWER_IS_BETTER else -1
    return metric, min(ok, key=lambda r: sign * number(r[metric]), default=None)


def plot(rows: list, swept: list, metric: str, path) -> None:
    """The metric of every finished trial against each swept setting, one panel each, as a PNG."""
    from graphdsl.training.records import figure, save_png

    ok = [r for r in rows if r["status"] == "ok"]
    names = swept or ["seed"]
    fig = figure(path, 4 * len(names), 3.2)
    for ax, name in zip(fig.subplots(1, len(names), squeeze=False)[0], names):
        xs = [number(r[name]) for r in ok]
        if not all(math.isfinite(x) for x in xs):  # words or lists: one position each, in order met
            labels = list(dict.fromkeys(r[name] for r in ok))
            xs = [labels.index(r[name]) for r in ok]
            ax.set_xticks(range(len(labels)), labels)
        elif xs and min(xs) > 0 and max(xs) >= 100 * min(xs):
            ax.set_xscale("log")
        ax.scatter(xs, [number(r[metric]) for r in ok], alpha=0.7)
        ax.set_xlabel(name)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
    save_png(fig, path)


def describe(row: dict, swept: list) -> str:
    """`trial 1a2b3c4d5e6f, seed 0, lr=0.1, hidden=16`, for progress lines and the best trial."""
    return f"trial {row['trial']}, seed {row['seed']}" + "".join(f", {k}={row[k]}" for k in swept)
