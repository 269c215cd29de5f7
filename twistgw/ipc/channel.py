"""The control channel between the supervisor and a worker: framed messages over a UNIX
socketpair, with file descriptors (listening sockets) passed alongside.

A message is a pickled tuple ``(op, *args)`` behind a 4-byte length. Both ends run
under the same user and the channel is a private socketpair, so pickle is safe here;
it carries the routing table (frozen attrs records) without a separate codec.
A descriptor is sent just before the message that names it; the receiver queues
descriptors in arrival order and the message takes the oldest.

Supervisor to worker: ``hello(version, table, inherited)`` first, then
``table(version, table)``, ``listen(key, family)`` with a descriptor, ``close(key)``,
``drain(timeout)`` and the watchdog's ``ping(n)``. Worker to supervisor:
``applied(version)`` or ``rejected(version, error)`` for each table (``rejected``: the
table did not compile and the last good one keeps serving), ``pong(n)`` for each ping
(answered on the worker's reactor thread, so a worker whose reactor is stuck cannot
answer), and ``log(level, namespace, text)``.
"""

from __future__ import annotations

import os
import pickle
from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet.interfaces import IFileDescriptorReceiver
from twisted.logger import Logger
from twisted.protocols.basic import Int32StringReceiver
from twisted.python.failure import Failure
from zope.interface import implementer

log = Logger()

Handler = Callable[..., None]


def encode(op: str, *args: Any) -> bytes:
    """A message as the channel sends it."""
    return pickle.dumps((op, *args), protocol=pickle.HIGHEST_PROTOCOL)


@implementer(IFileDescriptorReceiver)
class ControlChannel(Int32StringReceiver):
    """Either end of the channel; ``handlers`` maps an op to a callable."""

    MAX_LENGTH = 256 * 1024 * 1024  # a routing table with many thousands of routes

    def __init__(self, handlers: dict[str, Handler], on_lost: Callable[[], None]) -> None:
        self.handlers = handlers
        self.on_lost = on_lost
        self.descriptors: deque[int] = deque()
        self.connected_ = False

    def connectionMade(self) -> None:
        self.connected_ = True

    def send(self, op: str, *args: Any, descriptor: int | None = None) -> None:
        if not self.connected_:
            return
        if descriptor is not None:
            self.transport.sendFileDescriptor(descriptor)
        self.sendString(encode(op, *args))

    def send_encoded(self, message: bytes) -> None:
        """Send a message ``encode`` made (once, for every worker)."""
        if self.connected_:
            self.sendString(message)

    def fileDescriptorReceived(self, descriptor: int) -> None:
        self.descriptors.append(descriptor)

    def take_descriptor(self) -> int:
        """The oldest descriptor received and not yet claimed by a message."""
        return self.descriptors.popleft()

    def stringReceived(self, data: bytes) -> None:
        op, *args = pickle.loads(data)
        handler = self.handlers.get(op)
        if handler is None:
            log.warn("control channel: unknown message {op}", op=op)
            return
        handler(*args)

    def lengthLimitExceeded(self, length: int) -> None:
        log.error("control channel: a {length}-byte message is over the limit", length=length)
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = None) -> None:
        self.connected_ = False
        while self.descriptors:
            os.close(self.descriptors.popleft())
        self.on_lost()
