"""The workers' reactor: Twisted's epoll reactor without per-event log context.

For every ready descriptor, Twisted's epoll reactor calls ``log.callWithLogger``,
which sets up a legacy-logging context (a log prefix) before ``_doReadOrWrite`` does
the work; profiles of a busy worker put about an eighth of its time there.
``_doReadOrWrite`` already catches what ``doRead``/``doWrite`` raise, logs it and drops
the connection, so this reactor calls it directly and loses only the legacy log
prefix of messages logged during the call.

This overrides ``doPoll`` and uses the reactor's private ``_poller``,
``_selectables`` and ``_doReadOrWrite``: ``install`` checks that they are there and
otherwise installs Twisted's default reactor, so a Twisted that changes them only
loses the shortcut. ``tests/test_reactor.py`` runs it against real sockets.

It also holds the ``WriteBatch`` of ``dataplane/fastwrite.py``: the writes of a turn
are sent after its events are handled, and any made outside events (by timers, by
threads' calls) before the reactor waits for the next ones.
"""

from __future__ import annotations

import errno

from twisted.internet import tcp
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.logger import Logger

from twistgw.dataplane.fastwrite import WriteBatch

log = Logger()

#: Connections whose read events ``FastEPollReactor._read`` handles itself: Twisted's
#: own TCP classes, whose ``doRead`` it repeats.
_PLAIN_TCP = frozenset({tcp.Server, tcp.Client})


def _fast_class():
    try:
        from select import EPOLLIN

        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # not Linux
        return None

    class FastEPollReactor(EPollReactor):
        def __init__(self) -> None:
            self.write_batch = WriteBatch()
            super().__init__()

        def doPoll(self, timeout):
            batch = self.write_batch
            if batch:
                batch.send()
                if batch or self._newTimedCalls:  # (left by the send, or due: no wait)
                    timeout = 0
            if timeout is None:
                timeout = -1
            try:
                events = self._poller.poll(timeout, len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:
                    return
                raise
            selectables = self._selectables
            handle = self._doReadOrWrite
            for fd, event in events:
                selectable = selectables.get(fd)
                if selectable is None:
                    continue
                if (
                    event == EPOLLIN
                    and type(selectable) in _PLAIN_TCP
                    and "doRead" not in selectable.__dict__  # (abortConnection sets one)
                ):
                    self._read(selectable)
                    continue
                try:
                    handle(selectable, fd, event)
                except Exception:
                    log.failure("unhandled error handling an I/O event")
            if batch:
                batch.send()

        doIteration = doPoll

        def _read(self, connection) -> None:
            """What ``_doReadOrWrite`` does with a TCP connection's read event
            (``Connection.doRead``: one ``recv``, then ``dataReceived`` or the
            disconnection its outcome means), without its three calls' layers."""
            try:
                data = connection.socket.recv(connection.bufferSize)
            except BlockingIOError:
                return
            except OSError:
                self._disconnectSelectable(connection, CONNECTION_LOST, True)
                return
            if not data:
                self._disconnectSelectable(connection, CONNECTION_DONE, True)
                return
            try:
                connection.protocol.dataReceived(data)
            except BaseException as error:
                log.failure("unhandled error in dataReceived")
                self._disconnectSelectable(connection, error, True)

    return FastEPollReactor


def install() -> str:
    """Install the fast reactor if this Twisted has what it needs, else the default
    one; returns the installed reactor's class name."""
    cls = _fast_class()
    if cls is not None:
        candidate = cls()
        if all(
            hasattr(candidate, name)
            for name in (
                "_poller",
                "_selectables",
                "_doReadOrWrite",
                "_disconnectSelectable",
                "_newTimedCalls",
            )
        ) and isinstance(candidate._selectables, dict):
            from twisted.internet.main import installReactor

            installReactor(candidate)
            return type(candidate).__name__
    from twisted.internet import default

    default.install()
    from twisted.internet import reactor

    return type(reactor).__name__
