"""A response body the gateway does not want (a health probe's, an auth service's
"allowed"), read and dropped within bounds: past ``limit`` bytes or ``timeout``
seconds the connection is given up, so a service that streams forever holds none."""

from __future__ import annotations

from twisted.internet.protocol import Protocol

#: The most bytes of an unwanted body read (to keep its connection for reuse).
MAX_DISCARDED = 64 * 1024


class DiscardBody(Protocol):
    """Drops a ``twisted.web.client`` response's body (``response.deliverBody``)."""

    def __init__(self, reactor, timeout: float, limit: int = MAX_DISCARDED) -> None:
        self.left = limit
        self.timer = reactor.callLater(timeout, self._give_up)

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's interface)
        self.left -= len(data)
        if self.left < 0:
            self._give_up()

    def connectionLost(self, reason=None) -> None:  # noqa: N802
        if self.timer.active():
            self.timer.cancel()

    def _give_up(self) -> None:
        if self.timer.active():
            self.timer.cancel()
        if self.transport is not None:
            self.transport.stopProducing()  # (the connection is closed, not reused)
