"""What a person sees of a training run as it goes: a progress display, and Ctrl-C, which stops
the run between two chunks of epochs."""
from __future__ import annotations

import signal
import sys
import threading
import time
from contextlib import contextmanager


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training between two chunks: the model holds the weights after `epoch`
    epochs (`step` steps), and the checkpoint, if one was asked for, holds the same."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"training interrupted after epoch {epoch}")
        self.epoch, self.step = epoch, step


@contextmanager
def interrupts_between_chunks():
    """Yields a function that says whether Ctrl-C was pressed; the press itself raises nothing.
    The compiled loop updates theta and the optimizer state in place, and Python then records
    the chunk (params, step count, trace, checkpoint): stopping anywhere in there would leave
    those out of step. So a first Ctrl-C takes effect once the chunk is recorded (a chunk runs
    for about trainer.CHUNK_SECONDS); a second one stops at once. Signals can only be handled on
    the main thread; elsewhere Ctrl-C keeps Python's behaviour."""
    pressed = []
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def press(signum, frame):
        if pressed:
            raise KeyboardInterrupt
        pressed.append(signum)

    previous = signal.signal(signal.SIGINT, press)
    try:
        yield lambda: bool(pressed)
    finally:
        signal.signal(signal.SIGINT, previous)


class Progress:
    """What a run shows on stderr as it goes: on a terminal, a tqdm bar of at most WIDTH columns
    with the latest metrics, left in place at the end; elsewhere (a log file, CI), the first
    epoch's line, then a line every PERIOD seconds, then a summary. Nothing when off."""

    WIDTH = 80
    PERIOD = 5.0  # seconds between lines off a terminal: a long run of fast epochs writes a few lines

    def __init__(self, total: int, done: int, on: bool, stream=None):
        self.on, self.total, self.stream = on, total, stream or sys.stderr
        self.bar, self.last, self.shown, self.began = None, None, None, time.monotonic()
        if on and self.stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="epoch", file=self.stream, leave=True,
                            ncols=self.WIDTH, bar_format="{l_bar}{bar:12}| {n_fmt}/{total_fmt} [{elapsed}] {postfix}")

    def epoch(self, epoch: int, values: dict) -> None:
        if not self.on:
            return
        self.last = (epoch, values)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(brief(values, self.WIDTH - 40), refresh=False)
        elif self.shown is None or time.monotonic() - self.shown >= self.PERIOD:
            self.line(f"epoch {epoch}/{self.total}: {brief(values)}")

    def line(self, text: str) -> None:
        print(text, file=self.stream, flush=True)
        self.shown = time.monotonic()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.on and self.last is not None:
            epoch, values = self.last
            self.line(f"trained to epoch {epoch}/{self.total} in {time.monotonic() - self.began:.1f} s: "
                      f"{brief(values)}")


def brief(values: dict, room: int | None = None) -> str:
    """Metrics as `loss 0.1234, accuracy 0.97`, cut to `room` characters if given."""
    text = ", ".join(f"{k} {v:.4g}" for k, v in values.items())
    return text if room is None or len(text) <= room else text[:room - 3] + "..."
