"""A worker process: the data plane, driven by the supervisor over the control channel.

    python -m twistgw.dataplane.worker --control-fd 3 --index 0

The supervisor starts workers; they are not meant to be run by hand. A worker gets
the routing table before it accepts anything, applies every later table it is sent,
adopts the listening sockets it is handed (inherited at spawn or passed later), and
drains on SIGTERM, on the supervisor's request, or when the supervisor goes away.
It answers the supervisor's watchdog pings from its reactor thread.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import signal
import socket
import sys

import attrs
from twisted.internet.protocol import Factory
from twisted.logger import (
    FilteringLogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    globalLogBeginner,
)

from twistgw.dataplane.http.accesslog import JSONLinesObserver
from twistgw.dataplane.http.accesslog import route_to as route_access_log_to
from twistgw.ipc.channel import ControlChannel

log = Logger()


class Worker:
    """Glue between the control channel and the data plane."""

    def __init__(self, reactor, plane, index: int, drain_timeout: float) -> None:
        self.reactor = reactor
        self.plane = plane
        self.index = index
        self.drain_timeout = drain_timeout
        self.channel = ControlChannel(
            {
                "hello": self.hello,
                "table": self.table,
                "listen": self.listen,
                "close": self.close,
                "drain": self.drain,
                "ping": lambda n: self.channel.send("pong", n),
            },
            on_lost=self.supervisor_gone,
        )
        self.stopping = False

    def hello(self, version: int, table, inherited: list) -> None:
        """The first message: the table to start with (the last one other workers
        applied), then the sockets inherited at spawn (descriptors 4, 5, ... in the
        order listed)."""
        self.table(version, table)
        for offset, (key, family) in enumerate(inherited):
            self.plane.adopt(tuple(key), 4 + offset, family)

    def table(self, version: int, table) -> None:
        """Serve a new table, or reject it (the last good one keeps serving)."""
        try:
            self.plane.apply(table)
        except Exception as exc:
            log.failure(
                "routing table version {version} rejected; the last good table keeps serving",
                version=version,
                level=LogLevel.error,
            )
            self.channel.send("rejected", version, str(exc) or type(exc).__name__)
            return
        self.channel.send("applied", version)

    def listen(self, key, family) -> None:
        self.plane.adopt(tuple(key), self.channel.take_descriptor(), family)

    def close(self, key) -> None:
        self.plane.close(tuple(key))

    def drain(self, timeout: float | None = None) -> None:
        if self.stopping:
            return
        self.stopping = True
        d = self.plane.drain(self.drain_timeout if timeout is None else timeout)
        d.addBoth(lambda _: self.reactor.stop())

    def supervisor_gone(self) -> None:
        if not self.stopping:
            log.warn("the supervisor went away; draining")
            self.drain()


#: Test-only: the name of a signal (e.g. SIGUSR1) that makes a worker spin forever.
TEST_HANG_ENV = "TWISTGW_TEST_HANG_ON_SIGNAL"


def install_test_hang(reactor, signal_name: str) -> None:
    """Test-only (``TWISTGW_TEST_HANG_ON_SIGNAL=SIGUSR1``): the signal puts the reactor
    thread into a busy loop for good, as a pathological request would, so tests can
    see the supervisor's watchdog replace the worker. Never set in production."""

    def spin() -> None:
        while True:
            pass

    signal.signal(getattr(signal, signal_name), lambda *_: reactor.callFromThread(spin))


class ChannelLogObserver:
    """Sends this worker's log events to the supervisor, which logs them."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def __call__(self, event: dict) -> None:
        text = formatEvent(event)
        if event.get("log_failure") is not None:
            text += "\n" + event["log_failure"].getTraceback()
        level = event.get("log_level", LogLevel.info)
        self.worker.channel.send("log", level.name, event.get("log_namespace", "-"), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="twistgw worker (started by the supervisor)")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--settings", default="{}", help="DataPlaneSettings as JSON")
    parser.add_argument("--rate-limit-fd", type=int, help="the shared rate-limit table")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # one descriptor per connection: take all the system allows
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    from twistgw.dataplane import reactor as fast_reactor

    reactor_name = fast_reactor.install()
    from twisted.internet import reactor

    from twistgw.dataplane.plane import DataPlane
    from twistgw.dataplane.ratelimit import SharedBuckets
    from twistgw.dataplane.redisbuckets import RedisBuckets
    from twistgw.dataplane.redisclient import RedisClient
    from twistgw.ipc.settings import SESSION_KEY_ENV, DataPlaneSettings
    from twistgw.metrics import Metrics

    settings = DataPlaneSettings.from_json(args.settings)
    session_key = os.environ.pop(SESSION_KEY_ENV, "")  # (a secret: not on the command line)
    if session_key:
        settings = attrs.evolve(settings, session_key=session_key)
    buckets = None
    if settings.rate_limit_redis:  # every replica's buckets, in Redis
        client = RedisClient(settings.rate_limit_redis, reactor)
        client.start()
        buckets = RedisBuckets(client)
    elif args.rate_limit_fd is not None:
        buckets = SharedBuckets(args.rate_limit_fd, settings.rate_limit_keys)
    spans = None
    if settings.otlp_endpoint:  # (built here, in the worker: its thread is this process's)
        from twistgw.dataplane.http.otlp import SpanExport

        spans = SpanExport(settings.otlp_endpoint, settings.trace_sampling_ratio, args.index)
        reactor.addSystemEventTrigger("before", "shutdown", spans.shutdown, reactor)
    worker = Worker(
        reactor,
        DataPlane(reactor, Metrics(), settings, spans=spans, buckets=buckets),
        args.index,
        args.drain_timeout,
    )
    worker.plane.on_stuck = worker.drain
    observers = [
        FilteringLogObserver(ChannelLogObserver(worker), [LogLevelFilterPredicate(LogLevel.info)])
    ]
    if settings.access_log:
        access = JSONLinesObserver(settings.access_log, reactor)
        route_access_log_to(access)
        reactor.addSystemEventTrigger("before", "shutdown", access.close)
    globalLogBeginner.beginLoggingTo(
        observers,
        redirectStandardIO=False,
    )
    reactor.adoptStreamConnection(
        args.control_fd, socket.AF_UNIX, Factory.forProtocol(lambda: worker.channel)
    )
    os.close(args.control_fd)
    log.info("worker {index} runs {reactor}", index=args.index, reactor=reactor_name)

    def on_term(signum, frame) -> None:
        reactor.callFromThread(worker.drain)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor decides; a Ctrl-C reaches it
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if os.environ.get(TEST_HANG_ENV):
        install_test_hang(reactor, os.environ[TEST_HANG_ENV])
    # Everything alive now lives as long as the worker: keep it out of the collector's
    # scans. (Raising the collection thresholds was measured too: closed connections
    # leave protocol/transport cycles, and rarer, larger collections worsened p99.)
    gc.freeze()
    reactor.run(installSignalHandlers=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
