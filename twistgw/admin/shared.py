"""Admin answers too costly for the supervisor's reactor: computed in a thread, one at
a time, and shared.

Rendering ``/metrics`` or ``/dashboard.json`` reads every worker's metric series (on a
10,000-route config with traffic, seconds of CPU); on the reactor that would stall the
probes, config reloads and worker supervision for as long. A ``SharedAnswer`` prepares
its work on the reactor (taking the state it needs), runs it in a thread, and gives the
one result to every request that asked meanwhile, and to those that ask within
``fresh`` seconds after, so many pollers cost one computation."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import threads
from twisted.internet.defer import Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure

#: Work prepared on the reactor: what then runs in a thread and returns the body.
Prepare = Callable[[], Callable[[], bytes]]
#: Requests that may wait for one computation; more are refused at once.
MAX_WAITING = 64


class Busy(Exception):
    """Too many requests wait for the answer already."""


class SharedAnswer:
    """The body ``prepare`` leads to, computed at most once at a time."""

    def __init__(
        self,
        prepare: Prepare,
        clock: IReactorTime,
        fresh: float,
        in_thread: Callable[[Callable[[], bytes]], Deferred] | None = None,
    ) -> None:
        self._prepare = prepare
        self._clock = clock
        self._fresh = fresh
        self._in_thread = in_thread or (lambda work: threads.deferToThread(work))
        self._waiting: list[Deferred] | None = None  # requests waiting for the one running
        self._body: bytes | None = None
        self._at = 0.0

    def get(self) -> Deferred:
        """A Deferred firing with the body (a failure if the computation raised)."""
        if self._body is not None and self._clock.seconds() - self._at < self._fresh:
            return _fired(self._body)
        if self._waiting is not None and len(self._waiting) >= MAX_WAITING:
            return fail(Busy(f"{MAX_WAITING} requests already wait for this answer"))
        waiter: Deferred = Deferred()
        if self._waiting is not None:
            self._waiting.append(waiter)
            return waiter
        self._waiting = [waiter]
        maybeDeferred(self._prepare).addCallback(self._in_thread).addBoth(self._done)
        return waiter

    def _done(self, result: object) -> None:
        waiting, self._waiting = self._waiting or [], None
        if isinstance(result, bytes):
            self._body, self._at = result, self._clock.seconds()
        for waiter in waiting:
            if isinstance(result, Failure):
                waiter.errback(result)
            else:
                waiter.callback(result)


def _fired(body: bytes) -> Deferred:
    return succeed(body)
