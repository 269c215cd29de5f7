"""Send on a TCP transport's socket directly, once per reactor turn when the
reactor batches.

Twisted's ``transport.write`` queues the bytes and asks the reactor to write them on
its next turn: an epoll registration, a loop iteration and an unregistration per
response. When the transport has nothing queued, one non-blocking ``send`` almost
always takes the whole response, and the rest (if any) goes through
``transport.write`` as usual, behind it, so order is kept.

Under the workers' reactor (``dataplane/reactor.py``), which has a ``WriteBatch``,
the send waits for the end of the reactor turn: what a turn writes to a transport is
sent with one ``send`` after all the turn's I/O events are handled (and before the
reactor next waits for any). So once a transport has a writer, everything written to
it must go through that writer: a ``transport.write`` in the same turn would overtake
the batched bytes. On a loaded gateway a turn handles many connections'
events, and sending each answer as it was made woke the peer (the backend, the
client) once per answer; a batch wakes it once per turn, which cut the CPU time per
proxied request of the gateway by a sixth and the backend's and the load generator's
by as much (docs/performance.md). A quiet gateway's turn handles one event, so its
answer leaves as soon as that event is handled, as before. Other reactors get the
send at once.

Knowing "nothing is queued" means reading Twisted's transport internals
(``dataBuffer``, ``_tempDataBuffer``, ``socket``), which no public interface exposes.
That is all isolated here: ``writer_for`` checks that the transport has the expected
shape and otherwise returns plain ``transport.write``, so a Twisted that changes these
internals, or a transport of another kind (TLS, UNIX, a test transport), just loses
the shortcut. Only plain TCP connections qualify: a TLS transport forwards attribute
lookups to the TCP transport beneath it, whose socket must never be written directly.
``tests/test_fastwrite.py`` checks all of this against real sockets, under both kinds
of reactor.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from typing import Protocol

from twisted.internet import tcp
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol

log = Logger()

Writer = Callable[[bytes], None]


_SHAPE_BY_CLASS: dict[type, bool] = {}


def _has_expected_shape(transport: object) -> bool:
    """Whether the shortcut applies, decided once per transport class."""
    known = _SHAPE_BY_CLASS.get(type(transport))
    if known is None:
        known = _SHAPE_BY_CLASS[type(transport)] = _check_shape(transport)
    return known


def _check_shape(transport: object) -> bool:
    # A real TCP connection, not merely something with its attributes: wrappers such
    # as TLS forward unknown attributes to the TCP transport beneath them, and writing
    # to that socket would bypass the wrapper (sending plaintext on a TLS connection).
    return (
        isinstance(transport, tcp.Connection)
        and hasattr(transport, "socket")
        and hasattr(transport.socket, "send")
        and isinstance(getattr(transport, "dataBuffer", None), bytes | memoryview)
        and isinstance(getattr(transport, "_tempDataBuffer", None), list)
        and hasattr(transport, "disconnecting")
        and hasattr(transport, "_writeDisconnecting")
        and hasattr(transport, "_aborting")
    )


def has_pending(transport) -> bool:
    """Whether bytes wait in the transport's buffer: a TCP transport's, or a TLS
    layer's and its TCP transport's (True when that cannot be known, so callers take
    the cautious path)."""
    if _has_expected_shape(transport):
        return bool(transport.dataBuffer or transport._tempDataBuffer)
    if isinstance(transport, TLSMemoryBIOProtocol) and isinstance(
        getattr(transport, "_appSendBuffer", None), list
    ):
        return bool(transport._appSendBuffer) or has_pending(transport.transport)
    return True


def _queue(transport, data: bytes) -> None:
    """Twisted's own write (the class's, should the instance's be a writer)."""
    type(transport).write(transport, data)


def _through_twisted(transport) -> bool:
    """Whether a write must go through the transport's own buffer: bytes wait there
    already, or the transport is closing (its close follows that buffer)."""
    return bool(
        transport.dataBuffer
        or transport._tempDataBuffer
        or transport.disconnecting
        or transport._writeDisconnecting
        or not transport.connected
    )


def _send(transport, data: bytes) -> None:
    """Send ``data`` now if nothing is queued ahead of it, else (and whatever the
    socket does not take) through the transport's own buffer."""
    if _through_twisted(transport):
        _queue(transport, data)
        return
    try:
        sent = transport.socket.send(data)
    except BlockingIOError:
        sent = 0
    except OSError:
        _queue(transport, data)  # let Twisted see and report the error its own way
        return
    if sent < len(data):
        _queue(transport, bytes(data[sent:]))  # (Twisted takes bytes only, not views)


class Layer(Protocol):
    """A protocol layer (TLS) that gathers a turn's writes in the batch too: they are
    handed to ``send_batched`` at the end of the turn, before the sockets' writes."""

    def send_batched(self, data: bytes) -> None: ...

    def abortConnection(self) -> None: ...


#: Passes over the layers per ``send``: what they write in the last pass waits for
#: the next send (before the reactor waits), so layers that keep writing to each
#: other cannot hold the reactor in one turn.
MAX_LAYER_PASSES = 4


class WriteBatch:
    """What writers gave their transports during one reactor turn, in order; the
    reactor calls ``send`` after handling a turn's events and before waiting."""

    __slots__ = ("pending", "layers")

    def __init__(self) -> None:
        self.pending: dict[tcp.Connection, list[bytes]] = {}
        self.layers: dict[Layer, list[bytes]] = {}

    def __bool__(self) -> bool:
        return bool(self.pending or self.layers)

    def send(self) -> None:
        """Hand each layer its turn's bytes (what they write joins ``pending``), then
        send each transport's bytes of the turn with one write."""
        for _ in range(MAX_LAYER_PASSES):  # (a layer's records may lead one to write)
            if not self.layers:
                break
            layers, self.layers = self.layers, {}
            for layer, chunks in layers.items():
                try:
                    layer.send_batched(chunks[0] if len(chunks) == 1 else b"".join(chunks))
                except Exception:
                    log.failure("a connection's writes failed: the connection is aborted")
                    with suppress(Exception):
                        layer.abortConnection()
        pending, self.pending = self.pending, {}
        for transport, chunks in pending.items():
            if not transport.connected or transport._aborting:
                continue  # lost or aborted in the same turn: Twisted drops its bytes
            try:
                _send(transport, chunks[0] if len(chunks) == 1 else b"".join(chunks))
            except Exception:  # (a bug's bytes, e.g. a str): that connection only
                log.failure("a connection's writes failed: the connection is aborted")
                transport.abortConnection()


def write_batch_of(transport) -> WriteBatch | None:
    """The batch of ``transport``'s reactor, if it has one and the transport is a
    plain TCP connection whose writes may join it."""
    if not _has_expected_shape(transport):
        return None
    batch = getattr(getattr(transport, "reactor", None), "write_batch", None)
    return batch if isinstance(batch, WriteBatch) else None


def writer_for(transport) -> Writer:
    """A ``write(data)`` for ``transport`` that sends directly when it can: at the end
    of the reactor turn if the reactor has a ``write_batch``, else at once."""
    if not _has_expected_shape(transport):
        return transport.write
    batch = write_batch_of(transport)
    if batch is None:
        return lambda data: _send(transport, data)

    def write(data: bytes) -> None:
        pending = batch.pending
        chunks = pending.get(transport)
        if chunks is not None:
            chunks.append(data)
        elif _through_twisted(transport):
            _queue(transport, data)
        else:
            pending[transport] = [data]

    return write
