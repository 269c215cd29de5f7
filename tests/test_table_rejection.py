"""A routing table a worker cannot compile is rejected, never fatal: the worker keeps
its last good table and says so; the supervisor shows it in ``/status`` errors, in a
metric and in the log, and stays ready.

The tables here are built by hand: validation and the translator would not let such
routes through."""

from __future__ import annotations

import http.client
import os
import pickle
import socket
import struct
import subprocess
import sys

import pytest
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, globalLogPublisher

from twistgw.dataplane.plane import DataPlane, TableRejected
from twistgw.ipc.channel import ControlChannel
from twistgw.metrics import Metrics
from twistgw.routing import ir
from twistgw.snapshot import Snapshot
from twistgw.supervisor import workers as workers_module
from twistgw.supervisor.controlplane import ControlPlane
from twistgw.supervisor.sockets import bind_socket
from twistgw.supervisor.workers import WorkerPool
from twistgw.translate import TranslateOptions

#: Routes no worker can compile: a regular expression that does not parse, and a
#: header value the wire (Latin-1) cannot carry.
UNCOMPILABLE = {
    "regex": ir.Route("default/bad", 0, ir.Match("RegularExpression", "(")),
    "non-latin-1": ir.Route(
        "default/bad",
        0,
        ir.Match(),
        ir.Filters(request_headers=ir.HeaderModifier(set=(("X-Price", "10 €"),))),
    ),
}


def _redirect(hostname: str) -> ir.Route:
    """A route answered by the gateway itself: a redirect to ``hostname``."""
    redirect = ir.RequestRedirect(hostname=hostname, status_code=301)
    return ir.Route("default/r", 0, ir.Match(), ir.Filters(redirect=redirect))


def _bind(port: int, *routes: ir.Route, address: str = "127.0.0.1") -> ir.Bind:
    listener = ir.HTTPListener(
        "default/gw/http", "default/gw", None, (ir.VirtualHost("*", routes),)
    )
    return ir.Bind(address, port, "HTTP", (listener,))


def _frame(op: str, *args) -> bytes:
    """A control channel message as the other end writes it."""
    data = pickle.dumps((op, *args))
    return struct.pack("!I", len(data)) + data


def _frames(data: bytes) -> list[tuple]:
    messages = []
    while data:
        (length,) = struct.unpack("!I", data[:4])
        messages.append(pickle.loads(data[4 : 4 + length]))
        data = data[4 + length :]
    return messages


# -- the data plane: compile everything, then swap, or change nothing


def _plane_serving(*binds: ir.Bind) -> DataPlane:
    """A data plane on a test reactor serving ``binds``, their sockets adopted."""
    plane = DataPlane(MemoryReactorClock(), Metrics())
    plane.apply(ir.RoutingTable(binds))
    for bind in binds:
        plane.adopt(bind.key, os.open(os.devnull, os.O_RDONLY), socket.AF_INET)
    return plane


@pytest.mark.parametrize("bad", UNCOMPILABLE.values(), ids=UNCOMPILABLE.keys())
def test_a_table_that_does_not_compile_changes_nothing(bad):
    served, waiting = _bind(8080, _redirect("good.example")), _bind(8081)
    plane = _plane_serving(served)
    plane.apply(ir.RoutingTable((served, waiting)))  # 8081's socket is still to come
    router, pending = plane.servers[served.key].http.router, plane.waiting[waiting.key]

    with pytest.raises(TableRejected, match=r"^127\.0\.0\.1:8080 HTTP: \w+: "):
        plane.apply(ir.RoutingTable((_bind(8080, bad), _bind(8082))))

    assert plane.servers[served.key].http.router is router
    assert plane.binds == {served.key: served, waiting.key: waiting}
    assert plane.waiting == {waiting.key: pending}


def test_nothing_is_half_applied_when_a_later_bind_fails():
    first, second = _bind(8080, _redirect("a.example")), _bind(8081, _redirect("b.example"))
    plane = _plane_serving(first, second)
    routers = {key: server.http.router for key, server in plane.servers.items()}

    with pytest.raises(TableRejected, match="127.0.0.1:8081 HTTP"):
        plane.apply(
            ir.RoutingTable(
                (_bind(8080, _redirect("new.example")), _bind(8081, UNCOMPILABLE["regex"]))
            )
        )

    assert {key: server.http.router for key, server in plane.servers.items()} == routers


def test_the_next_good_table_is_applied_after_a_rejection():
    plane = _plane_serving(_bind(8080, _redirect("a.example")))
    with pytest.raises(TableRejected):
        plane.apply(ir.RoutingTable((_bind(8080, UNCOMPILABLE["regex"]),)))
    newer = _bind(8080, _redirect("b.example"))
    plane.apply(ir.RoutingTable((newer,)))
    assert plane.servers[newer.key].http.router.bind == newer


# -- a real worker process, driven over its control channel as the supervisor does


class _Supervisor:
    """The supervisor's end of a worker's control channel, over a real socketpair."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.logs: list[tuple[str, str, str]] = []

    def send(self, op: str, *args, descriptor: int | None = None) -> None:
        if descriptor is None:
            self.sock.sendall(_frame(op, *args))
        else:
            socket.send_fds(self.sock, [_frame(op, *args)], [descriptor])

    def _exactly(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            assert chunk, "the worker closed its control channel"
            data += chunk
        return data

    def answer(self) -> tuple:
        """The worker's next message other than a log line."""
        while True:
            (length,) = struct.unpack("!I", self._exactly(4))
            op, *args = pickle.loads(self._exactly(length))
            if op != "log":
                return (op, *args)
            self.logs.append(tuple(args))


def _get(port: int) -> tuple[int, str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        connection.request("GET", "/x")
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("location") or ""
    finally:
        connection.close()


def test_a_worker_rejects_what_it_cannot_compile_and_keeps_serving():
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    ours.settimeout(20)  # a guard against a hang, not a measurement
    listening = bind_socket("127.0.0.1", 0, "tcp")  # as the supervisor binds them
    port = listening.getsockname()[1]
    worker = subprocess.Popen(
        [sys.executable, "-m", "twistgw.dataplane.worker", "--control-fd", str(theirs.fileno())],
        pass_fds=[theirs.fileno()],
        stdin=subprocess.DEVNULL,
    )
    theirs.close()
    supervisor = _Supervisor(ours)
    try:
        supervisor.send("hello", 1, ir.RoutingTable((_bind(port, _redirect("good.example")),)), [])
        assert supervisor.answer() == ("applied", 1)
        supervisor.send(
            "listen", ("127.0.0.1", port, "tcp"), socket.AF_INET, descriptor=listening.fileno()
        )
        status, location = _get(port)
        assert status == 301 and "//good.example:" in location

        supervisor.send("table", 2, ir.RoutingTable((_bind(port, UNCOMPILABLE["regex"]),)))
        op, version, error = supervisor.answer()
        assert (op, version) == ("rejected", 2)
        assert error.startswith(f"127.0.0.1:{port} HTTP: ")  # then the compiler's complaint
        assert any(
            level == "error" and "version 2 rejected" in text and "Traceback" in text
            for level, _, text in supervisor.logs
        ), supervisor.logs
        status, location = _get(port)
        assert status == 301 and "//good.example:" in location

        supervisor.send("table", 3, ir.RoutingTable((_bind(port, _redirect("newer.example")),)))
        assert supervisor.answer() == ("applied", 3)
        status, location = _get(port)
        assert status == 301 and "//newer.example:" in location

        supervisor.send("drain", 5.0)
        assert worker.wait(timeout=20) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        ours.close()
        listening.close()


# -- the supervisor: /status errors, the metric, the log, readiness


def _worker(pool: WorkerPool, index: int):
    """A worker as the pool sees one; what the pool sends it lands in its channel's
    transport."""
    handle = pool.new_handle(index)
    handle.channel.makeConnection(StringTransport())
    pool.workers[index] = handle
    return handle


def test_the_supervisor_reports_rejections_and_stays_ready():
    metrics = Metrics()
    reactor = MemoryReactorClock()
    pool = WorkerPool(reactor, 2, 1.0, metrics)
    control = ControlPlane(TranslateOptions(), pool, metrics, reactor)
    workers = [_worker(pool, 0), _worker(pool, 1)]
    #: tables on an address this host lacks: the pool binds no socket for them
    nowhere = "192.0.2.1"
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        control.on_snapshot(Snapshot())  # version 1: the first configuration
        good = ir.RoutingTable((_bind(80, _redirect("good.example"), address=nowhere),))
        pool.apply(good)  # version 2
        for handle in workers:
            handle.channel.dataReceived(_frame("applied", 1) + _frame("applied", 2))
        assert control.ready() == (True, "ready")

        pool.apply(
            ir.RoutingTable((_bind(80, UNCOMPILABLE["regex"], address=nowhere),))
        )  # version 3
        assert control.ready()[0] is False
        why = "192.0.2.1:80 HTTP: error: missing ), unterminated subpattern at position 0"
        for handle in workers:
            handle.channel.dataReceived(_frame("rejected", 3, why))

        assert control.ready() == (True, "ready")
        assert control.status_document()["errors"] == [
            {
                "source": "workers 0, 1",
                "message": "rejected routing table version 3; the last good table keeps "
                f"serving: {why}",
            }
        ]
        assert metrics.registry.get_sample_value("twistgw_table_rejections_total") == 2
        logged = [e for e in events if "rejected routing table" in e.get("log_format", "")]
        assert [(e["log_level"], e["index"], e["version"], e["error"]) for e in logged] == [
            (LogLevel.error, 0, 3, why),
            (LogLevel.error, 1, 3, why),
        ]
        dump = control.config_dump()["workers"]
        assert [(w["tableVersion"], w["rejectedTableVersion"]) for w in dump] == [(2, 3), (2, 3)]

        # a replacement worker starts from what the others serve, then gets the current table
        replacement = _worker(pool, 1)
        pool.greet(replacement, [])
        sent = _frames(replacement.channel.transport.value())
        assert [message[:3] for message in sent] == [("hello", 2, good), ("table", 3, pool.table)]

        newer = ir.RoutingTable((_bind(80, _redirect("newer.example"), address=nowhere),))
        pool.apply(newer)  # version 4 compiles again
        for handle in (workers[0], replacement):
            handle.channel.dataReceived(_frame("applied", 4))
        assert control.status_document()["errors"] == []
        assert control.ready() == (True, "ready")
        assert pool.good == (4, newer)
        assert pool.sent == {}
    finally:
        globalLogPublisher.removeObserver(events.append)
        pool.sockets.close_all()


def test_a_table_too_large_for_the_workers_channel_is_refused_and_the_last_stays(monkeypatch):
    """Routes may expand (rules x matches x hostnames x listeners) into a table larger
    than a worker accepts, which would end the channel and restart workers in a loop;
    the supervisor refuses it instead."""
    metrics = Metrics()
    reactor = MemoryReactorClock()
    pool = WorkerPool(reactor, 1, 1.0, metrics)
    control = ControlPlane(TranslateOptions(), pool, metrics, reactor)
    (worker,) = [_worker(pool, 0)]
    try:
        control.on_snapshot(Snapshot())  # version 1
        assert pool.version == 1 and control.status_document()["errors"] == []
        monkeypatch.setattr(ControlChannel, "MAX_LENGTH", 64)
        worker.channel.transport.clear()
        control.on_snapshot(Snapshot())  # the same config, now "too large"
        assert pool.version == 1 and worker.channel.transport.value() == b""
        (error,) = control.status_document()["errors"]
        assert error["source"] == "routing table"
        assert "over the 64 a worker accepts" in error["message"]
        assert (
            metrics.registry.get_sample_value(
                "twistgw_config_refused_total", {"limit": "table_bytes"}
            )
            == 1
        )
        monkeypatch.undo()
        control.on_snapshot(Snapshot())  # fits again: applied, the error gone
        assert pool.version == 2 and control.status_document()["errors"] == []
    finally:
        pool.sockets.close_all()


def test_a_worker_applying_a_large_table_gets_watchdog_grace_in_proportion(monkeypatch):
    """Compiling a table is a worker's longest silence: the watchdog waits longer for
    one that was just sent a large table, and a pong it sent before does not cut that."""
    monkeypatch.setattr(workers_module, "TABLE_BYTES_PER_SECOND", 10)
    metrics = Metrics()
    reactor = MemoryReactorClock()
    pool = WorkerPool(reactor, 1, 1.0, metrics)
    try:
        worker = _worker(pool, 0)
        worker.heard = reactor.seconds()
        table = ir.RoutingTable((_bind(80, _redirect("big.example"), address="192.0.2.1"),))
        pool.apply(table)
        grace = len(pool.table_message) / 10
        assert worker.heard == pytest.approx(reactor.seconds() + min(grace, 120.0))
        granted = worker.heard
        worker.channel.dataReceived(_frame("pong", 1))  # (sent before the table came)
        assert worker.heard == granted
        reactor.advance(granted + 1)
        worker.channel.dataReceived(_frame("pong", 2))
        assert worker.heard == reactor.seconds()
    finally:
        pool.sockets.close_all()
