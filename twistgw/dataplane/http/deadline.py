"""A resettable deadline on an injected clock, cheap enough to move on every request.

Moving a deadline later only stores a number: the one scheduled call, when it runs
early, schedules itself again for what is left. Only a deadline moved earlier than the
scheduled call reschedules it. So a keep-alive connection costs one delayed call for
its whole life, not one per request."""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime


def _nothing() -> None:
    pass


class Deadline:
    """Calls ``expired`` once ``clock`` passes the time last set, unless cleared."""

    __slots__ = ("clock", "expired", "when", "_call")

    def __init__(self, clock: IReactorTime, expired: Callable[[], None]) -> None:
        self.clock = clock
        self.expired = expired
        self.when: float | None = None
        self._call: IDelayedCall | None = None

    def set(self, seconds: float) -> None:
        """Expire ``seconds`` from now (replacing any earlier setting)."""
        when = self.clock.seconds() + seconds
        self.when = when
        call = self._call
        if call is None:
            self._call = self.clock.callLater(seconds, self._fire)
        elif call.getTime() > when:
            call.reset(seconds)

    def clear(self) -> None:
        """Do not expire (the scheduled call stays, and finds nothing to do)."""
        self.when = None

    def cancel(self) -> None:
        """Clear and drop the scheduled call and the callback (the owner is going away:
        no reference cycle through the callback is left behind)."""
        self.when = None
        self.expired = _nothing
        call, self._call = self._call, None
        if call is not None and call.active():
            call.cancel()

    def _fire(self) -> None:
        self._call = None
        when = self.when
        if when is None:
            return
        left = when - self.clock.seconds()
        if left > 0:
            self._call = self.clock.callLater(left, self._fire)
            return
        self.when = None
        self.expired()
