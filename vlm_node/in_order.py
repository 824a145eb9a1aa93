"""One point of concurrent work passed in submission order.

The offline tools keep several frames of a stream in detection at once on a thread pool
(`pipeline.run_in_flight`), and their outputs must not depend on how many: the anonymizer's
frame plan (which frames get the whole plate scan and the thorough face pass) counts frames in
order. Pool threads reach the anonymizer in whatever order the scheduler lets them, so the runner
hands each task a ticket in submission order and the anonymizer draws its plan inside `turn()`,
which lets ticket n through only after every earlier ticket has passed or finished. Code not
run by the runner has no ticket and passes at once (the node, one frame at a time).
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_local = threading.local()


class Turnstile:
    """Tickets 0, 1, 2, ... taken in order by the submitting thread; `turn(ticket)` waits
    until every smaller ticket has passed its turn or finished."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._issued = 0
        self._next = 0  # the ticket whose turn it is
        self._over: set[int] = set()  # tickets passed or finished out of turn

    def take(self) -> int:
        with self._cond:
            self._issued += 1
            return self._issued - 1

    def _advance(self) -> None:
        self._next += 1
        while self._next in self._over:
            self._over.discard(self._next)
            self._next += 1
        self._cond.notify_all()

    def wait(self, ticket: int) -> None:
        with self._cond:
            while self._next < ticket:
                self._cond.wait()

    def finish(self, ticket: int) -> None:
        """`ticket` has passed (or will never reach) its turn."""
        with self._cond:
            if ticket == self._next:
                self._advance()
            elif ticket > self._next:
                self._over.add(ticket)

    def run(self, fn: Callable[[T], R], item: T, ticket: int) -> R:
        """`fn(item)` with `ticket` as this thread's turn, finished however `fn` ends."""
        _local.turn = (self, ticket)
        try:
            return fn(item)
        finally:
            _local.turn = None
            self.finish(ticket)


@contextmanager
def turn() -> Iterator[None]:
    """Run the body when this thread's ticket is due (at once without one); a second
    `turn()` of the same task does not wait again."""
    current = getattr(_local, "turn", None)
    if current is None:
        yield
        return
    turnstile, ticket = current
    turnstile.wait(ticket)
    try:
        yield
    finally:
        _local.turn = None
        turnstile.finish(ticket)
