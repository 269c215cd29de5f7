"""The worker memory watermark decided on a test reactor, with the resident memory
given by the test: past the limit a worker stops accepting on its TCP sockets and
closes idle keep-alive connections; below 90 % of it, it accepts again."""

from __future__ import annotations

import os
import socket

from twisted.internet.testing import MemoryReactorClock

from tests.http.test_no_cycles import Transport
from twistgw.dataplane.plane import MB, DataPlane
from twistgw.ipc.settings import DataPlaneSettings
from twistgw.metrics import Metrics
from twistgw.routing import ir

BIND = ir.Bind("127.0.0.1", 8080, "HTTP")
UDP = ("127.0.0.1", 5353, "udp")
#: A request answered (404: the table has no routes), after which the connection idles.
ANSWERED = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


class Port:
    """A listening port that records whether it reads (accepts)."""

    reading = True

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


def _plane(limit_mb: int, resident: list[int]) -> DataPlane:
    settings = DataPlaneSettings(worker_memory_limit_mb=limit_mb)
    plane = DataPlane(MemoryReactorClock(), Metrics(), settings, lambda: resident[0])
    plane.apply(ir.RoutingTable((BIND,)))
    plane.adopt(BIND.key, os.open(os.devnull, os.O_RDONLY), socket.AF_INET)
    plane.ports = {BIND.key: Port(), UDP: Port()}
    return plane


def _connection(plane: DataPlane, received: bytes = b"") -> Transport:
    protocol = plane.servers[BIND.key].http.buildProtocol(None)
    transport = Transport()
    protocol.makeConnection(transport)
    protocol.dataReceived(received)
    return transport


def _shedding(plane: DataPlane) -> float | None:
    return plane.metrics.registry.get_sample_value("twistgw_worker_memory_shedding")


def test_past_the_limit_a_worker_stops_accepting_until_below_90_percent_of_it():
    resident = [95 * MB]
    plane = _plane(100, resident)
    tcp, udp = plane.ports[BIND.key], plane.ports[UDP]
    idle = _connection(plane, ANSWERED)
    fresh = _connection(plane)
    answered_partly = _connection(plane, b"GET / HTTP/1.1\r\nHost: exa")
    plane.check_memory()
    assert (tcp.reading, idle.disconnecting, _shedding(plane)) == (True, False, 0)

    resident[0] = 101 * MB
    plane.check_memory()
    assert (tcp.reading, udp.reading, _shedding(plane)) == (False, True, 1)
    assert (idle.disconnecting, answered_partly.disconnecting) == (True, False)
    assert not fresh.disconnecting  # its first request is likely on its way
    later = _connection(plane, ANSWERED)  # idle while shedding: it goes at the next check
    plane.check_memory()
    assert later.disconnecting

    resident[0] = 91 * MB  # under the limit, not yet under 90 % of it
    plane.check_memory()
    assert (tcp.reading, _shedding(plane)) == (False, 1)

    resident[0] = 89 * MB
    plane.check_memory()
    assert (tcp.reading, udp.reading, _shedding(plane)) == (True, True, 0)
    assert not answered_partly.disconnecting


def test_without_a_limit_memory_is_not_read():
    plane = _plane(0, [])  # reading the resident memory would raise IndexError
    idle = _connection(plane, ANSWERED)
    plane.check_memory()
    assert (plane.ports[BIND.key].reading, idle.disconnecting) == (True, False)


def test_a_worker_past_a_tiny_limit_sheds():
    """The resident memory read from /proc: every process is past 1 MB."""
    settings = DataPlaneSettings(worker_memory_limit_mb=1)
    plane = DataPlane(MemoryReactorClock(), Metrics(), settings)
    plane.check_memory()
    assert plane.shedding


def test_a_worker_that_stays_past_the_limit_is_recycled_once():
    """Freed memory seldom goes back to the system: after MEMORY_RECYCLE_AFTER seconds
    past the limit the worker is asked to drain (and the supervisor replaces it)."""
    from twistgw.dataplane.plane import MEMORY_RECYCLE_AFTER

    resident = [101 * MB]
    plane = _plane(100, resident)
    asked = []
    plane.on_stuck = lambda: asked.append(True)
    plane.check_memory()
    plane.reactor.advance(MEMORY_RECYCLE_AFTER - 1)
    plane.check_memory()
    assert asked == []
    plane.reactor.advance(2)
    plane.check_memory()
    plane.reactor.advance(5)
    plane.check_memory()
    assert asked == [True]


def test_memory_the_allocator_keeps_free_is_handed_back_before_deciding():
    """Freed memory glibc keeps in its heap is resident until trimmed: a worker trims
    before it sheds, and while it sheds, so it accepts again once it is freed."""
    resident = [101 * MB]
    held = [0]  # of it, what the allocator keeps free

    def release() -> None:
        resident[0] -= held[0]
        held[0] = 0

    settings = DataPlaneSettings(worker_memory_limit_mb=100)
    plane = DataPlane(
        MemoryReactorClock(), Metrics(), settings, lambda: resident[0], release=release
    )
    held[0] = 20 * MB  # freed, not handed back yet: no reason to shed
    plane.check_memory()
    assert not plane.shedding

    resident[0] = 101 * MB  # in use: it sheds
    plane.check_memory()
    assert plane.shedding
    held[0] = 80 * MB  # freed, still resident: handed back, it accepts again
    plane.check_memory()
    assert (plane.shedding, resident[0]) == (False, 21 * MB)
