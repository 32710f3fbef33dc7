"""What a training run shows as it goes: a few lines off a terminal, a bar of 80 columns on one."""
import io
import re

from graphdsl.training import progress
from graphdsl.training.progress import Progress

METRICS = {"loss": 0.123456789, "accuracy": 0.975, "val_loss": 0.2345678, "val_accuracy": 0.9612345}


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_fast_epochs_give_the_first_line_and_a_summary():
    out = io.StringIO()
    bar = Progress(10_000, 0, True, stream=out)
    for epoch in range(1, 10_001):
        bar.epoch(epoch, METRICS)
    bar.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("epoch 1/10000: loss 0.1235, accuracy 0.975")
    assert lines[1].startswith("trained to epoch 10000/10000 in ")


def test_off_a_terminal_a_line_comes_every_period(monkeypatch):
    clock = iter(range(0, 1000, 2))  # each look at the clock is 2 s later
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    out = io.StringIO()
    bar = Progress(30, 0, True, stream=out)
    for epoch in range(1, 31):
        bar.epoch(epoch, METRICS)
    bar.close()
    shown = [int(m) for m in re.findall(r"^epoch (\d+)/30", out.getvalue(), re.M)]
    assert shown[0] == 1 and len(shown) < 30
    assert all(b - a <= 3 for a, b in zip(shown, shown[1:]))  # at least every PERIOD = 5 s of 2 s epochs


def test_on_a_terminal_the_bar_fits_80_columns_and_stays():
    out = Terminal()
    bar = Progress(50, 0, True, stream=out)
    for epoch in range(1, 51):
        bar.epoch(epoch, {**METRICS, "a_long_metric_name": 1.0, "another_one": 2.0})
    bar.close()
    drawn = [part for part in re.split(r"[\r\n]", out.getvalue()) if part.strip()]
    assert drawn and all(len(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", part)) <= 80 for part in drawn)
    assert "50/50" in drawn[-1] and out.getvalue().endswith("\n")  # left in place


def test_off_means_nothing():
    out = io.StringIO()
    bar = Progress(5, 0, False, stream=out)
    bar.epoch(1, METRICS)
    bar.close()
    assert out.getvalue() == ""
