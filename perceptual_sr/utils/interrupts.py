"""SIGTERM taken as Ctrl-C by the command-line tools.

`kill`, job schedulers and container stops send SIGTERM, and background jobs ignore Ctrl-C's
SIGINT. By default SIGTERM ends a process on the spot: a half-written `.partial` staging file stays
behind, and a training run loses every step since its last checkpoint. Inside
`sigterm_as_interrupt()` it raises KeyboardInterrupt instead, so the clean-up written for Ctrl-C
runs: atomic writes remove their staging files, `train.py` checkpoints, `prepare_data.py` records
its progress, and each tool prints its one line.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises KeyboardInterrupt in the main thread; the previous handler
    comes back after it. Elsewhere than in the main thread (where Python cannot set handlers), nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Within the block, Ctrl-C and SIGTERM wait until it ends, and are then delivered as they would
    have been (KeyboardInterrupt, or the default SIGTERM). For work that must not stop half-done: an
    optimizer step interrupted after the weights moved would be checkpointed as the step before, and
    a resumed run would train that batch twice. Elsewhere than in the main thread, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda signum, frame: received.append(signum))
                for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for number in dict.fromkeys(received):
        signal.raise_signal(number)
