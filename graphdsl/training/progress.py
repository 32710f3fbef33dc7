"""What a person sees of a training run as it goes: a progress display, and Ctrl-C, which stops
the run between two chunks of epochs."""
from __future__ import annotations

import signal
import sys
import threading
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
    """A tqdm bar on a terminal; one line per epoch on stderr otherwise; nothing when off."""

    def __init__(self, total: int, done: int, on: bool):
        self.on, self.total = on, total
        self.bar = None
        if on and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=done, unit="epoch", file=sys.stderr, leave=False)

    def epoch(self, epoch: int, values: dict) -> None:
        if not self.on:
            return
        text = ", ".join(f"{k} {v:.6g}" for k, v in values.items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text, refresh=False)
        else:
            print(f"epoch {epoch}/{self.total}: {text}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
