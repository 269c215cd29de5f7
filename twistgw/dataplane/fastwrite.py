"""Send on a TCP transport's socket at once when nothing is queued ahead.

Twisted's ``transport.write`` queues the bytes and asks the reactor to write them on
its next turn: an epoll registration, a loop iteration and an unregistration per
response. When the transport has nothing queued, one non-blocking ``send`` almost
always takes the whole response, and the rest (if any) goes through
``transport.write`` as usual, behind it, so order is kept.

Knowing "nothing is queued" means reading Twisted's transport internals
(``dataBuffer``, ``_tempDataBuffer``, ``socket``), which no public interface exposes.
That is all isolated here: ``writer_for`` checks that the transport has the expected
shape and otherwise returns plain ``transport.write``, so a Twisted that changes these
internals, or a transport of another kind (TLS, UNIX, a test transport), just loses
the shortcut. Only plain TCP connections qualify: a TLS transport forwards attribute
lookups to the TCP transport beneath it, whose socket must never be written directly.
``tests/test_fastwrite.py`` checks all of this against real sockets.
"""

from __future__ import annotations

from collections.abc import Callable

from twisted.internet import tcp

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
    )


def has_pending(transport) -> bool:
    """Whether bytes wait in the transport's buffer (True when that cannot be known,
    so callers take the cautious path)."""
    if not _has_expected_shape(transport):
        return True
    return bool(transport.dataBuffer or transport._tempDataBuffer)


def writer_for(transport) -> Writer:
    """A ``write(data)`` for ``transport`` that sends at once when it can."""
    if not _has_expected_shape(transport):
        return transport.write
    sock = transport.socket
    queued_write = transport.write

    def write(data: bytes) -> None:
        if (
            transport.dataBuffer
            or transport._tempDataBuffer
            or transport.disconnecting
            or not transport.connected
        ):
            queued_write(data)
            return
        try:
            sent = sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            queued_write(data)  # let Twisted see and report the error its own way
            return
        if sent < len(data):
            queued_write(data[sent:])

    return write
