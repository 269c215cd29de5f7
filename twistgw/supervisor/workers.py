"""Worker processes: spawned with the listening sockets, kept on the current routing
table, replaced when they die or stop answering the watchdog, drained on shutdown."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import sys

import attrs
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import Factory, ProcessProtocol
from twisted.internet.task import LoopingCall
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure

from twistgw.dataplane.ratelimit import shared_file
from twistgw.ipc.channel import ControlChannel, encode
from twistgw.ipc.settings import DEFAULT_SETTINGS, SESSION_KEY_ENV, DataPlaneSettings
from twistgw.routing.ir import RoutingTable
from twistgw.supervisor.sockets import ListenerSockets, family_of

log = Logger()


#: How fast a worker is assumed to compile a routing table, in encoded bytes per
#: second (measured 2-2.5 MB/s for the largest tables the translator's bounds allow),
#: and the most extra silence the watchdog grants a worker applying one.
TABLE_BYTES_PER_SECOND = 1_000_000
MAX_TABLE_GRACE = 120.0


class TableTooLarge(Exception):
    """A routing table too large for the control channel to carry to the workers."""

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the routing table takes {size:,} bytes, over the {ControlChannel.MAX_LENGTH:,} "
            "a worker accepts: the configuration's routes expand to too many entries "
            "(routes x rules x matches x hostnames x listeners); the previous table stays"
        )
        self.size = size


@attrs.define
class RestartPolicy:
    """When to replace a dead worker: at once after a worker that ran for a while,
    then exponentially later while workers keep dying young (a crash loop)."""

    first_delay: float = 0.0
    base_delay: float = 0.5
    max_delay: float = 30.0
    stable_after: float = 10.0
    failures: int = 0

    def delay(self, lived: float) -> float:
        """Seconds to wait before replacing a worker that lived ``lived`` seconds."""
        if lived >= self.stable_after:
            self.failures = 0
        self.failures += 1
        if self.failures == 1:
            return self.first_delay
        return min(self.max_delay, self.base_delay * 2 ** (self.failures - 2))


@attrs.define(eq=False)
class WorkerHandle:
    """A worker process as the supervisor sees it. ``applied``: the version of the
    table it serves; ``answered``: the last version it applied or rejected;
    ``rejected``: (version, why) while its last answer was a rejection; ``heard``: when
    it last answered a watchdog ping (None before its first answer) and ``heartbeat``
    that ping's number; ``hung``: killed by the watchdog and not yet reaped."""

    index: int
    channel: ControlChannel
    started_at: float
    process: object = None
    pid: int = 0
    applied: int = -1
    answered: int = -1
    rejected: tuple[int, str] | None = None
    heard: float | None = None
    heartbeat: int = -1
    hung: bool = False
    alive: bool = True

    def as_dict(self) -> dict:
        return {
            "index": self.index,
            "pid": self.pid,
            "tableVersion": self.applied,
            "rejectedTableVersion": self.rejected[0] if self.rejected else None,
            "heartbeat": self.heartbeat,
            "alive": self.alive,
        }


class _WorkerProcess(ProcessProtocol):
    def __init__(self, pool: WorkerPool, handle: WorkerHandle) -> None:
        self.pool, self.handle = pool, handle

    def processEnded(self, reason: Failure) -> None:
        self.pool.worker_ended(self.handle, reason)


class WorkerPool(Service):
    """N worker processes serving the data plane from sockets this process binds.

    The watchdog pings every worker several times per ``watchdog_timeout`` (at most
    once a second); a worker that has answered before and then answers nothing for
    ``watchdog_timeout`` seconds is killed and replaced like a worker that died. Time the
    supervisor itself was stalled (its reactor blocked, so answers went unread) does not
    count against the workers, and draining workers are not watched."""

    def __init__(
        self,
        reactor,
        count: int,
        drain_timeout: float,
        metrics,
        settings: DataPlaneSettings = DEFAULT_SETTINGS,
        watchdog_timeout: float = 10.0,
    ) -> None:
        if not settings.session_key:  # one per gateway start, shared by every worker
            settings = attrs.evolve(settings, session_key=secrets.token_hex(32))
        self.settings = settings
        self.reactor = reactor
        self.count = count
        self.drain_timeout = drain_timeout
        self.watchdog_timeout = watchdog_timeout
        self._watchdog = LoopingCall(self._watch)
        self._watchdog.clock = reactor
        self._pings = 0
        self._last_watch = 0.0
        self.metrics = metrics
        self.sockets = ListenerSockets(count)
        self.policy = RestartPolicy()
        self.workers: dict[int, WorkerHandle] = {}
        self.table = RoutingTable()
        self.version = 0
        self.table_message = encode("table", 0, self.table)
        #: the newest table a worker applied: what a new worker starts from
        self.good: tuple[int, RoutingTable] = (0, self.table)
        #: tables sent and not yet answered by every worker, by version
        self.sent: dict[int, RoutingTable] = {}
        self.stopping = False
        self._ended: dict[int, defer.Deferred] = {}
        self._devnull = os.open(os.devnull, os.O_RDWR)
        #: the rate-limit table every worker (and every replacement) shares
        self.buckets_fd = shared_file(settings.rate_limit_keys)

    # -- the data plane interface the control plane uses

    def apply(self, table: RoutingTable) -> None:
        """Bind what the table needs, then send every worker the table and sockets
        (encoded once); raise TableTooLarge, changing nothing, for a table the
        workers' channel cannot carry."""
        message = encode("table", self.version + 1, table)
        if len(message) > ControlChannel.MAX_LENGTH:
            raise TableTooLarge(len(message))
        self.version += 1
        self.table = table
        self.table_message = message
        self.sent[self.version] = table
        opened, closed = self.sockets.apply(table)
        # compiling a table is a worker's longest silence: give it time in proportion
        now = self.reactor.seconds()
        grace = min(len(message) / TABLE_BYTES_PER_SECOND, MAX_TABLE_GRACE)
        for handle in self.live():
            if handle.heard is not None:
                handle.heard = max(handle.heard, now + grace)
            handle.channel.send_encoded(message)
            for key in opened:
                handle.channel.send(
                    "listen",
                    key,
                    family_of(key[0]),
                    descriptor=self.sockets.descriptor(key, handle.index),
                )
            for key in closed:
                handle.channel.send("close", key)

    def feedback(self):
        return self.sockets.feedback()

    def ready(self) -> tuple[bool, str]:
        """Ready when every worker runs and has answered the current table: a worker
        that rejected it serves the last good one, and that is as ready as it gets."""
        behind = [h.index for h in self.live() if h.answered != self.version]
        if len(self.live()) < self.count:
            return False, f"{len(self.live())} of {self.count} workers running"
        if behind:
            return False, f"workers {behind} do not have the current routing table yet"
        return True, "ready"

    def errors(self) -> list[dict[str, str]]:
        """The workers' rejections of routing tables, in ``/status``'s ``errors`` shape
        (one entry per version and reason, naming the workers)."""
        by_reason: dict[tuple[int, str], list[int]] = {}
        for handle in self.live():
            if handle.rejected is not None:
                by_reason.setdefault(handle.rejected, []).append(handle.index)
        return [
            {
                "source": ("workers " if len(indexes) > 1 else "worker ")
                + ", ".join(map(str, sorted(indexes))),
                "message": f"rejected routing table version {version}; the last good table "
                f"keeps serving: {error}",
            }
            for (version, error), indexes in sorted(by_reason.items())
        ]

    def live(self) -> list[WorkerHandle]:
        return [handle for handle in self.workers.values() if handle.alive]

    def describe(self) -> list[dict]:
        return [handle.as_dict() for handle in self.workers.values()]

    # -- processes

    def startService(self) -> None:
        super().startService()
        for index in range(self.count):
            self.spawn(index)
        self._last_watch = self.reactor.seconds()
        self._watchdog.start(min(1.0, self.watchdog_timeout / 4), now=False)

    def spawn(self, index: int) -> None:
        if self.stopping:
            return
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handle = self.new_handle(index)
        inherited = sorted(self.sockets.sockets)
        child_fds = {0: self._devnull, 1: 1, 2: 2, 3: child_end.fileno()}
        for offset, key in enumerate(inherited):
            child_fds[4 + offset] = self.sockets.descriptor(key, index)
        buckets_fd = 4 + len(inherited)
        child_fds[buckets_fd] = self.buckets_fd
        args = [
            sys.executable,
            "-m",
            "twistgw.dataplane.worker",
            "--control-fd",
            "3",
            "--index",
            str(index),
            "--drain-timeout",
            str(self.drain_timeout),
            "--settings",
            attrs.evolve(self.settings, session_key="").to_json(),
            "--rate-limit-fd",
            str(buckets_fd),
        ]
        handle.process = self.reactor.spawnProcess(
            _WorkerProcess(self, handle),
            sys.executable,
            args,
            env={**os.environ, SESSION_KEY_ENV: self.settings.session_key},
            childFDs=child_fds,
        )
        child_end.close()
        handle.pid = handle.process.pid
        self.reactor.adoptStreamConnection(
            parent_end.fileno(), socket.AF_UNIX, Factory.forProtocol(lambda: handle.channel)
        )
        parent_end.close()
        self.workers[index] = handle
        self._ended[index] = defer.Deferred()
        self.greet(handle, inherited)
        self.metrics.workers.set(len(self.live()))
        log.info("worker {index} started (pid {pid})", index=index, pid=handle.pid)

    def new_handle(self, index: int) -> WorkerHandle:
        """A handle for worker ``index`` whose channel's messages update this pool."""
        handle = WorkerHandle(index, None, self.reactor.seconds())  # type: ignore[arg-type]
        handle.channel = ControlChannel(
            {
                "applied": lambda version: self._applied(handle, version),
                "rejected": lambda version, error: self._rejected(handle, version, error),
                "log": lambda *a: self._log(handle, *a),
                "pong": lambda n: self._pong(handle, n),
            },
            on_lost=lambda: None,
        )
        return handle

    def greet(self, handle: WorkerHandle, inherited: list) -> None:
        """A new worker's first messages: the newest table a worker applied (what the
        others serve, even when they rejected the current one) with the sockets it
        inherited, then the current table if that is another."""
        good_version, good_table = self.good
        handle.channel.send(
            "hello", good_version, good_table, [(key, family_of(key[0])) for key in inherited]
        )
        if good_version != self.version:
            handle.channel.send_encoded(self.table_message)

    def _applied(self, handle: WorkerHandle, version: int) -> None:
        handle.applied = version
        handle.rejected = None
        if version > self.good[0] and version in self.sent:
            self.good = (version, self.sent[version])
        self._answered(handle, version)

    def _rejected(self, handle: WorkerHandle, version: int, error: str) -> None:
        handle.rejected = (version, error)
        self.metrics.table_rejections.inc()
        log.error(
            "worker {index} rejected routing table version {version} and keeps serving "
            "version {applied}: {error}",
            index=handle.index,
            version=version,
            applied=handle.applied,
            error=error,
        )
        self._answered(handle, version)

    def _answered(self, handle: WorkerHandle, version: int) -> None:
        """Forget the tables every worker has answered."""
        handle.answered = version
        oldest = min(h.answered for h in self.live())
        for old in [v for v in self.sent if v <= oldest]:
            del self.sent[old]

    # -- the watchdog

    def _watch(self) -> None:
        """Kill the workers that stopped answering, then ping every worker."""
        now = self.reactor.seconds()
        stalled = now - self._last_watch - self._watchdog.interval
        self._last_watch = now
        for handle in self.live():
            if handle.heard is None or handle.hung:
                continue
            if stalled > 0:  # the supervisor could not hear anyone meanwhile
                handle.heard += stalled
            if now - handle.heard > self.watchdog_timeout:
                self._kill_hung(handle, now - handle.heard)
        self._pings += 1
        for handle in self.live():
            handle.channel.send("ping", self._pings)

    def _pong(self, handle: WorkerHandle, n: int) -> None:
        # (never earlier than a grace granted for a table: a pong sent before it came)
        handle.heard = max(handle.heard or 0.0, self.reactor.seconds())
        handle.heartbeat = n

    def _kill_hung(self, handle: WorkerHandle, silent: float) -> None:
        handle.hung = True
        self.metrics.watchdog_kills.inc()
        log.error(
            "worker {index} (pid {pid}) has not answered the watchdog for {silent:.1f}s "
            "(--worker-watchdog-timeout {timeout}s); killing it",
            index=handle.index,
            pid=handle.pid,
            silent=silent,
            timeout=self.watchdog_timeout,
        )
        with contextlib.suppress(ProcessExitedAlready):
            handle.process.signalProcess("KILL")

    def _log(self, handle: WorkerHandle, level: str, namespace: str, text: str) -> None:
        log.emit(
            LogLevel.levelWithName(level),
            "worker {index} [{ns}] {text}",
            index=handle.index,
            ns=namespace,
            text=text,
        )

    def worker_ended(self, handle: WorkerHandle, reason: Failure) -> None:
        handle.alive = False
        self.metrics.workers.set(len(self.live()))
        self.metrics.worker_exited(handle.pid)
        ended = self._ended.pop(handle.index, None)
        status = reason.value.exitCode if hasattr(reason.value, "exitCode") else None
        signal_number = getattr(reason.value, "signal", None)
        if ended is not None:
            ended.callback(None)
        if self.stopping:
            log.info("worker {index} (pid {pid}) exited", index=handle.index, pid=handle.pid)
            return
        lived = self.reactor.seconds() - handle.started_at
        delay = self.policy.delay(lived)
        self.metrics.worker_restarts.inc()
        log.error(
            "worker {index} (pid {pid}) died (exit status {status}, signal {signal}) "
            "after {lived:.1f}s; replacing it in {delay:.1f}s",
            index=handle.index,
            pid=handle.pid,
            status=status,
            signal=signal_number,
            lived=lived,
            delay=delay,
        )
        self.reactor.callLater(delay, self.spawn, handle.index)

    def stopService(self) -> defer.Deferred:
        """Drain every worker; kill the ones still running after the drain timeout."""
        super().stopService()
        self.stopping = True
        if self._watchdog.running:
            self._watchdog.stop()
        waits = list(self._ended.values())
        for handle in self.live():
            handle.channel.send("drain", self.drain_timeout)
        deadline = self.reactor.callLater(self.drain_timeout + 2.0, self.kill_all)
        d = defer.DeferredList(waits)

        def done(_):
            if deadline.active():
                deadline.cancel()
            self.sockets.close_all()

        return d.addCallback(done)

    def kill_all(self) -> None:
        for handle in self.live():
            with contextlib.suppress(ProcessExitedAlready):
                handle.process.signalProcess("KILL")
